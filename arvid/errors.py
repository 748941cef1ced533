"""arvid's one error type, and its one warning type.

Everything a user can get wrong (a file that is not a video, a clip of the wrong length, a model
file that does not match its config) raises `ArvidError` with a message that names the thing and
the problem and, where there is one, what to do. The CLI prints it as one line and exits with 2.
"""

from __future__ import annotations


class ArvidError(Exception):
    """A problem with the user's input, files or settings (not a bug in arvid)."""

    exit_code = 2


class ArvidNotice(UserWarning):
    """Something arvid changed on the way, or a result to expect, said as a Python warning: an input clip resized or
    turned to gray to fit the model, input frames that start the output but do not steer the new frames, or an
    input far from what the model was trained on."""
