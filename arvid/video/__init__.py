"""Video files and frames: read and write clips, fit them to a model's size, look at them.

Clips are `Video(frames, fps)` with frames uint8 (T, H, W, C), C in {1, 3}. See `arvid.video.io`
for the formats, `arvid.video.transforms` for resizing and cropping, `arvid.video.sheet` for
contact sheets, `arvid.video.flow` for optical flow (OpenCV) and warping along it.
"""

from arvid.video.io import ReadLimits, Video, VideoWriter, check_output, read_video, write_video
from arvid.video.sheet import clip_sheet_frames, clips_sheet, contact_sheet
from arvid.video.transforms import center_crop, fit_video, resize_video

__all__ = ["ReadLimits", "Video", "VideoWriter", "center_crop", "check_output", "clip_sheet_frames", "clips_sheet",
           "contact_sheet", "fit_video", "read_video",
           "resize_video", "write_video"]
