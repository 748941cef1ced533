"""Prototype: reference-conditioned tokenizer (trial code, not installed).

Frame 0 (the reference) is coded by the shipped plain tokenizer (frozen, 8x8 tokens). Every later latent
frame (tau=2 frames) is coded at 4x4 tokens by an encoder and decoder that see the reference frame's features.
Variants:
  xattn: reference features added at every level + cross-attention (8x8 and 16x16 levels) to reference features
  flow:  reference features added at every level + the decoder warps the reference pixels along a flow
         (coarse flow = soft-argmax of an attention at 16x16, plus a predicted residual) blended with its own rendering
Warm start: encoder/decoder trunks from the shipped tokenizer; reference net trunk from the context tokenizer.
"""
import argparse, math, os, time, json, sys
import numpy as np, torch, torch.nn.functional as F
from torch import nn
from einops import rearrange
from arvid.tokenizer import Tokenizer, TokenizerConfig
from arvid.tokenizer.model import Encoder, Decoder, ContextNet
from arvid.tokenizer.causal_conv import CausalConv3d, Downsample, Upsample, ResBlock, FrameNorm, StreamState
from arvid.tokenizer.quantize import Quantizer
from arvid.tokenizer.warp import warp
from arvid.data.moving_mnist import MovingMNIST
sys.path.insert(0, os.path.dirname(__file__))
from blockmatch import block_match

SHIPPED = "arvid/weights/default/tokenizer"
CONTEXT = "docs/tokenizer-eval/context-5400-1h/tokenizer"


class CrossAttn(nn.Module):
    """x (B, C, t, h, w) attends to ref (B, Cr, 1, h', w'); learned 2D positions; zero-init output."""
    def __init__(self, c, cr, hq, wq, hk, wk, heads=4):
        super().__init__()
        self.heads = heads
        self.norm_q, self.norm_k = FrameNorm(c), FrameNorm(cr)
        self.q, self.k, self.v = nn.Linear(c, c), nn.Linear(cr, c), nn.Linear(cr, c)
        self.pos_q = nn.Parameter(torch.randn(hq * wq, c) * 0.5)
        self.pos_k = nn.Parameter(torch.randn(hk * wk, cr) * 0.5)
        self.out = nn.Linear(c, c)
        nn.init.zeros_(self.out.weight); nn.init.zeros_(self.out.bias)

    def forward(self, x, ref):
        b, c, t, h, w = x.shape
        q = rearrange(self.norm_q(x), "b c t h w -> (b t) (h w) c") + self.pos_q
        kv = rearrange(self.norm_k(ref), "b c 1 h w -> b (h w) c") + self.pos_k
        kv = kv.repeat_interleave(t, dim=0)
        q, k, v = self.q(q), self.k(kv), self.v(kv)
        split = lambda z: rearrange(z, "n l (hd d) -> n hd l d", hd=self.heads)
        o = F.scaled_dot_product_attention(split(q), split(k), split(v))
        o = self.out(rearrange(o, "n hd l d -> n l (hd d)"))
        return x + rearrange(o, "(b t) (h w) c -> b c t h w", b=b, h=h)


class FlowAttn(nn.Module):
    """Coarse flow by soft-argmax: queries from decoder features x (B, C, t, h, w), keys from ref (B, Cr, 1, h, w);
    -> flow (B, 2, t, h, w) in pixels (dy, dx) at the full resolution's scale, i.e. (p' - p) * cell."""
    def __init__(self, c, cr, h, w, cell, dim=32):
        super().__init__()
        self.norm_q, self.norm_k = FrameNorm(c), FrameNorm(cr)
        self.q, self.k = nn.Linear(c, dim), nn.Linear(cr, dim)
        self.pos_q = nn.Parameter(torch.randn(h * w, c) * 0.5)
        self.pos_k = nn.Parameter(torch.randn(h * w, cr) * 0.5)
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        self.register_buffer("grid", torch.stack([ys, xs], -1).reshape(-1, 2).float() * cell, persistent=False)
        self.scale = dim ** -0.5

    def forward(self, x, ref):
        b, c, t, h, w = x.shape
        q = self.q(rearrange(self.norm_q(x), "b c t h w -> (b t) (h w) c") + self.pos_q)
        k = self.k(rearrange(self.norm_k(ref), "b c 1 h w -> b (h w) c") + self.pos_k).repeat_interleave(t, 0)
        a = torch.softmax(q @ k.transpose(1, 2) * self.scale, dim=-1)  # (B·t, hw, hw)
        src = a @ self.grid  # (B·t, hw, 2) expected source position
        flow = src - self.grid
        return rearrange(flow, "(b t) (h w) d -> b d t h w", b=b, h=h)


class RefTok(nn.Module):
    def __init__(self, variant, levels=(8, 6, 5), latent_down=1):
        super().__init__()
        base = Tokenizer.from_pretrained(SHIPPED)
        self.base = base.eval()
        for p in self.base.parameters():
            p.requires_grad_(False)
        cfg = base.config
        self.cfg, self.variant = cfg, variant
        self.qcfg = cfg.replace(levels=list(levels))
        D, W, kt = self.qcfg.latent_dim, cfg.level_widths, cfg.temporal_kernel
        self.ref = ContextNet(cfg.replace(context=True))
        ctx = Tokenizer.from_pretrained(CONTEXT)
        sd = {k: v for k, v in ctx.context.state_dict().items() if not k.startswith(("enc_out", "dec_out"))}
        self.ref.load_state_dict(sd, strict=False)
        self.latent_down = latent_down
        # extra 4x4 levels
        self.ref_down = nn.ModuleList([Downsample(W[-1], W[-1]) for _ in range(latent_down)])
        self.ref_enc4 = nn.ModuleList([CausalConv3d(W[-1], W[-1], 1, 1) for _ in range(latent_down)])
        self.ref_dec4 = nn.ModuleList([CausalConv3d(W[-1], W[-1], 1, 1) for _ in range(latent_down)])
        for m in [*self.ref_enc4, *self.ref_dec4]:
            nn.init.zeros_(m.conv.weight); nn.init.zeros_(m.conv.bias)
        self.encoder = Encoder(cfg); self.encoder.load_state_dict(base.encoder.state_dict())
        self.enc_down = nn.ModuleList([nn.ModuleList([Downsample(W[-1], W[-1]), ResBlock(W[-1], W[-1], kt)]) for _ in range(latent_down)])
        self.enc_norm = FrameNorm(W[-1]); self.enc_out = CausalConv3d(W[-1], D, 1, 1)
        self.quantizer = Quantizer(self.qcfg)
        self.dec_in = CausalConv3d(D, W[-1], kt)
        self.dec_up = nn.ModuleList([nn.ModuleList([ResBlock(W[-1], W[-1], kt), Upsample(W[-1], W[-1])]) for _ in range(latent_down)])
        self.decoder = Decoder(cfg.replace(warp=False))
        dsd = {k: v for k, v in base.decoder.state_dict().items() if not k.startswith(("motion_out", "conv_in"))}
        self.decoder.load_state_dict(dsd, strict=False)
        hl = 64 // cfg.spatial_factor  # 8
        self.xa_enc = CrossAttn(W[-1], W[-1], hl, hl, hl, hl)
        if variant == "xattn":
            self.xa8 = CrossAttn(W[-1], W[-1], hl, hl, hl, hl)
            self.xa16 = CrossAttn(W[1], W[1], 2 * hl, 2 * hl, 2 * hl, 2 * hl)
        elif variant in ("mv", "mvp", "mvl"):
            tau = cfg.temporal_factor
            self.xa8 = CrossAttn(W[-1], W[-1], hl, hl, hl, hl)
            self.enc_flow = CausalConv3d(3 * tau, W[1], 1, 1)
            self.flow_head = CausalConv3d(W[1], 2 * tau, 1, 3)
            self.motion_out = CausalConv3d(W[0], 3 * tau * cfg.patch ** 2, 1)
            nn.init.zeros_(self.motion_out.conv.weight); nn.init.zeros_(self.motion_out.conv.bias)
            if variant == "mvl":  # K rigid layers: the reference split into layers, each moved by one velocity
                self.K = 3
                self.assign = nn.Conv2d(W[0], self.K + 1, 3, padding=1)  # reference pixels -> layer (0: background)
                self.vel_head = nn.Linear(W[-1], self.K * 2 * tau)  # a change of each layer's displacement
                nn.init.zeros_(self.vel_head.weight)
                with torch.no_grad():
                    self.vel_head.bias.copy_(torch.randn(self.K * 2 * tau) * 0.5)
                self.enc_prev = CausalConv3d(2 * self.K, W[1], 1, 1)
                # per-layer attention over the 4x4 token features (vel_attn): a layer's query comes from its own
                # masked reference features, so it can look at the tokens where its object is
                self.vel_q = nn.Linear(W[0], W[-1])
                self.vel_base = nn.Parameter(torch.randn(self.K, W[-1]) * 0.02)
                self.vel_pos = nn.Parameter(torch.randn(16, W[-1]) * 0.02)
                self.vel_k = nn.Linear(W[-1], W[-1])
                self.vel_v = nn.Linear(W[-1], W[-1])
                self.vel_out = nn.Linear(W[-1], 2 * tau)
                nn.init.zeros_(self.vel_out.weight); nn.init.zeros_(self.vel_out.bias)
            if variant == "mvp":  # the decoder's previous flow, seen by the encoder (closed loop) and the decoder
                self.enc_prev = CausalConv3d(2, W[1], 1, 1)
                self.dec_prev = CausalConv3d(2, W[1], 1, 1)
                nn.init.zeros_(self.flow_head.conv.weight); nn.init.zeros_(self.flow_head.conv.bias)
        else:
            self.xa8 = CrossAttn(W[-1], W[-1], hl, hl, hl, hl)
            self.flow_attn = FlowAttn(W[1], W[1], 2 * hl, 2 * hl, cell=cfg.spatial_factor // 2)
            self.motion_out = CausalConv3d(W[0], 3 * cfg.temporal_factor * cfg.patch ** 2, 1)
            nn.init.zeros_(self.motion_out.conv.weight); nn.init.zeros_(self.motion_out.conv.bias)

    def ref_features(self, ref):
        """ref (B, C, H, W) -> (enc list, dec list) of (B, w, 1, h, w) from the full-res level down to 4x4."""
        p = self.cfg.patch
        like = ref.new_zeros(ref.shape[0], 1, 1, ref.shape[-2] // p, ref.shape[-1] // p)
        # ContextNet wants (B, C, k, H, W) frames and gives levels 32,16,8; we also need the trunk's raw 8x8 level
        x = rearrange(ref[:, :, None], "b c k (h p) (w q) -> b (c k p q) 1 h w", p=p, q=p)
        x = torch.cat([x, x.new_ones(x.shape[0], 1, *x.shape[2:])], 1)
        levels = [F.silu(self.ref.conv_in(x))]
        for down in self.ref.downs:
            levels.append(down(levels[-1]))
        enc = [o(l) for o, l in zip(self.ref.enc_out, levels)]
        dec = [o(l) for o, l in zip(self.ref.dec_out, levels)]
        raw = levels[:]
        x4 = levels[-1]
        for d, e, dd in zip(self.ref_down, self.ref_enc4, self.ref_dec4):
            x4 = d(x4)
            enc.append(e(x4)); dec.append(dd(x4)); raw.append(x4)
        return enc, dec, raw

    def encode(self, frames, ref_feats, state=None, bm=None):
        """frames (B, C, T, H, W) with T a multiple of tau (the dynamic frames) -> latents (B, D, t, 4, 4).
        bm: block matching (flow (B, 2, T, 16, 16), weight (B, 1, T, 16, 16)) for the mv variant."""
        enc, _, raw = ref_feats
        x = self.base.fold(frames, pad_first=False)
        E = self.encoder
        x = E.conv_in(x, state) + enc[0]
        for i, level in enumerate(E.levels):
            for block in level:
                x = block(x, state)
            x = x + enc[i + 1]
            if i == 0 and bm is not None:
                fin = torch.cat([bm[0] / 8, bm[1]], 1)  # (B, 3, T, 16, 16)
                fin = rearrange(fin, "b c (t k) h w -> b (k c) t h w", k=self.cfg.temporal_factor)
                x = x + self.enc_flow(fin)
                if self.variant == "mvp":
                    x = x + self.enc_prev(self.prev_flow / 8)
                if self.variant == "mvl":
                    pv = self.prev_v.reshape(x.shape[0], -1, 1, 1, 1).expand(-1, -1, 1, *x.shape[-2:])
                    x = x + self.enc_prev(pv / 8)
        for block in E.mid:
            x = block(x, state)
        x = self.xa_enc(x, raw[len(E.levels)])
        for j, (down, block) in enumerate(self.enc_down):
            x = block(down(x) + enc[len(E.levels) + 1 + j], state)
        return self.enc_out(F.silu(self.enc_norm(x)))

    def decode(self, zq, ref, ref_feats, state=None):
        """zq (B, D, t, 4, 4), ref (B, C, H, W) -> frames (B, C, t*tau, H, W)."""
        _, dec, raw = ref_feats
        n = len(self.decoder.levels)
        x = self.dec_in(zq, state)
        for j, (block, up) in enumerate(self.dec_up):
            x = block(x + dec[n + 1 + j], state)
            if self.variant == "mvl" and j == 0:
                tau = self.cfg.temporal_factor
                if getattr(self, "vel_attn", False):
                    d = self._vel_attn(x, raw)  # (B, t, K·2·τ)
                else:
                    d = self.vel_head(x.mean((3, 4)).transpose(1, 2))  # (B, t, K·2·τ)
                d = rearrange(d, "b t (k c j) -> b k c (t j)", k=self.K, c=2, j=tau) * 8
                self.vel = self.prev_v[..., None] + torch.cumsum(d, dim=-1)  # (B, K, 2, T) displacement into the reference
            x = up(x)
        x = x + dec[n]
        Dm = self.decoder
        for block in Dm.mid:
            x = block(x, state)
        x = self.xa8(x, raw[n])
        coarse = None
        for i, level in enumerate(Dm.levels):
            upsample, *blocks = level
            x = upsample(x) + dec[n - 1 - i]
            for block in blocks:
                x = block(x, state)
            if i == 0:
                if self.variant == "xattn":
                    x = self.xa16(x, raw[n - 1])
                elif self.variant == "mvl":
                    pass
                elif self.variant in ("mv", "mvp"):
                    if self.variant == "mvp":
                        x = x + self.dec_prev(self.prev_flow / 8)
                    f16 = self.flow_head(x) * 8  # (B, 2τ, t, 16, 16)
                    if self.variant == "mvp":  # a change of the previous flow
                        f16 = f16 + self.prev_flow.repeat(1, self.cfg.temporal_factor, 1, 1, 1)
                    coarse = rearrange(f16, "b (k c) t h w -> b c (t k) h w", k=self.cfg.temporal_factor)
                    self.last_flow = coarse
                else:
                    coarse = self.flow_attn(x, raw[n - 1])  # (B, 2, t, 16, 16)
        h = F.silu(Dm.norm_out(x))
        direct = self.base.unfold(Dm.conv_out(h), drop_first=False)  # (B, C, T, H, W)
        if self.variant == "xattn":
            return direct
        motion = self.base.unfold(self.motion_out(h), drop_first=False)  # (B, 3, T, H, W)
        if self.variant == "mvl":
            return self._layers(direct, motion, ref, raw)
        B, _, T, H, W_ = direct.shape
        up = F.interpolate(coarse, size=(coarse.shape[2], H, W_), mode="trilinear", align_corners=False)
        if self.variant not in ("mv", "mvp"):
            up = up.repeat_interleave(self.cfg.temporal_factor, dim=2)
        flow = up + motion[:, :2]
        gate = torch.sigmoid(motion[:, 2:3] - (3.0 if self.variant in ("mv", "mvp") else 2.0))  # starts mostly on the warped reference
        refT = ref[:, :, None].expand(-1, -1, T, -1, -1)
        warped = warp(rearrange(refT, "b c t h w -> (b t) c h w"), rearrange(flow, "b c t h w -> (b t) c h w"))
        warped = rearrange(warped, "(b t) c h w -> b c t h w", b=B)
        self.last_warped = warped
        return gate * direct + (1 - gate) * warped

    def _vel_attn(self, x, raw):
        """x (B, C, t, 4, 4) token-level features -> each layer's displacement change (B, t, K·2·τ), read by a
        query per layer (its mask-weighted reference features) over the 16 positions (no averaging across layers)."""
        B, C, t = x.shape[:3]
        a = torch.softmax(self.assign(raw[0][:, :, 0]), 1)[:, 1:]  # (B, K, 32, 32)
        f = raw[0][:, :, 0]  # (B, W0, 32, 32)
        pooled = torch.einsum("bkhw,bchw->bkc", a, f) / a.sum((2, 3))[..., None].clamp(min=1e-3)  # (B, K, W0)
        q = self.vel_q(pooled) + self.vel_base  # (B, K, C)
        tok = rearrange(x, "b c t h w -> (b t) (h w) c")
        k, v = self.vel_k(tok + self.vel_pos), self.vel_v(tok)  # (B·t, 16, C)
        q = q.repeat_interleave(t, 0)  # (B·t, K, C)
        att = torch.softmax(q @ k.transpose(1, 2) / C ** 0.5, -1)  # (B·t, K, 16)
        d = self.vel_out(att @ v)  # (B·t, K, 2τ)
        d = d + self.vel_head.bias.view(self.K, -1)  # keep the layers' symmetry-breaking start
        return rearrange(d, "(b t) k j -> b t (k j)", b=B)

    def _layers(self, direct, motion, ref, raw):
        """Each layer k of the reference (soft masks from its features) moved rigidly by vel[:, k]; summed."""
        B, _, T, H, W_ = direct.shape
        self.feats_raw0 = raw[0][:, :, 0]
        a = torch.softmax(self.assign(raw[0][:, :, 0]), 1)  # (B, K+1, 32, 32)
        a = F.interpolate(a, size=(H, W_), mode="bilinear", align_corners=False)
        content = (ref + 1) / 2 * a[:, 1:]  # (B, K, H, W): each layer's pixels in [0, 1]
        flow = self.vel[..., None, None].expand(-1, -1, -1, -1, H, W_)  # (B, K, 2, T, H, W)
        src = content[:, :, None].expand(-1, -1, T, -1, -1).reshape(B * self.K * T, 1, H, W_)
        fl = rearrange(flow, "b k c t h w -> (b k t) c h w")
        moved = warp(src, fl).view(B, self.K, T, H, W_)
        y = moved.sum(1, keepdim=True).clamp(0, 1) * 2 - 1  # (B, 1, T, H, W)
        self.last_warped = y
        gate = torch.sigmoid(motion[:, 2:3] - 3.0)
        return gate * direct + (1 - gate) * y

    def forward(self, video, ref):
        """video (B, C, T, H, W) full clip, T = 1 + k*tau; ref (B, C, H, W). -> recon of frames 1.. , codes, aux"""
        feats = self.ref_features(ref)
        if self.variant in ("mvp", "mvl"):
            return self.forward_loop(video, ref, feats)
        self.bm = block_match(ref, video[:, 0, 1:]) if self.variant == "mv" else None
        z = self.encode(video[:, :, 1:], feats, bm=self.bm)
        zq, codes, aux = self.quantizer(z, update=self.training)
        return self.decode(zq, ref, feats), codes, aux

    def forward_loop(self, video, ref, feats):
        """Closed loop over latent frames: each is coded against the decoder's previous flow (its state)."""
        tau = self.cfg.temporal_factor
        B, _, T, H, W_ = video.shape
        bm = block_match(ref, video[:, 0, 1:])
        keep = torch.is_grad_enabled()
        es, ds = StreamState(keep), StreamState(keep)
        self.prev_flow = video.new_zeros(B, 2, 1, H // 4, W_ // 4)  # the reference's own flow: none
        self.prev_v = video.new_zeros(B, getattr(self, "K", 1), 2)
        outs, codes, flows, aux, warps = [], [], [], [], []
        for j in range(1, T, tau):
            sl = slice(j - 1, j - 1 + tau)
            z = self.encode(video[:, :, j:j + tau], feats, es, bm=(bm[0][:, :, sl], bm[1][:, :, sl]))
            zq, c, a = self.quantizer(z, update=self.training)
            outs.append(self.decode(zq, ref, feats, ds))
            if self.variant == "mvl":
                flows.append(self.vel)
                self.prev_v = self.vel[..., -1].detach()
            else:
                flows.append(self.last_flow)
            warps.append(self.last_warped)
            codes.append(c); aux.append(a)
            if self.variant != "mvl":
                self.prev_flow = self.last_flow[:, :, -1:].detach()  # (B, 2, 1, 16, 16): the last frame's flow
        self.bm, self.last_flow, self.all_warped = bm, torch.cat(flows, -1 if self.variant == "mvl" else 2), torch.cat(warps, 2)
        return torch.cat(outs, 2), torch.cat(codes, 1), torch.stack(aux).mean()

    @torch.no_grad()
    def reconstruct(self, video, decoded_ref=True):
        """Full clip -> full reconstruction: frame 0 from the base tokenizer, the rest from the reference."""
        c0 = self.base.encode(video[:, :, :1])
        f0 = self.base.decode(c0)[:, :, 0]
        ref = f0 if decoded_ref else video[:, :, 0]
        rest = self.forward(video, ref)[0].clamp(-1, 1)
        return torch.cat([f0[:, :, None], rest], 2)


def assign_loss(model, ref_frame, fl, wt, dist):
    """Cross-entropy of the reference's layer masks (16x16) against labels from block matching: a target cell with
    content, matched at displacement f, labels the reference cell at (cell + f) with the layer whose displacement is
    nearest f; reference cells with no content are background (0). Cells labelled twice keep the last label."""
    B, _, T, h, w = fl.shape
    logits = F.avg_pool2d(model.assign(model.feats_raw0), 2)  # (B, K+1, 16, 16)
    labels = torch.full((B, h * w), -100, dtype=torch.long)
    empty = F.avg_pool2d((ref_frame + 1) / 2, 4).view(B, -1) < 0.03
    labels[empty] = 0
    k = dist.argmin(1) + 1  # (B, T, h, w): nearest layer (1..K)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for b in range(B):
        m = wt[b, 0] > 0  # (T, h, w)
        qy = (ys[None] + (fl[b, 0] / 4).round().long()).clamp(0, h - 1)[m]
        qx = (xs[None] + (fl[b, 1] / 4).round().long()).clamp(0, w - 1)[m]
        labels[b, qy * w + qx] = k[b][m]
    return F.cross_entropy(logits.flatten(2), labels, ignore_index=-100)


def oracle_batch(ds, step, bs):
    """Like `batch`, plus what the clip generator knows: which digit owns each pixel of frame 0, (B, 64, 64) int64
    in {0: background, 1, 2: the digits}, and each digit's true displacement into frame 0, (B, 2, 2, T-1) (dy, dx)."""
    from arvid.data.base import clip_rng
    from arvid.data.moving_mnist import bounce_path, DIGIT
    owners, disp = [], []
    for i in range(step * bs, (step + 1) * bs):
        rng = clip_rng(ds.seed, ds.split, i)
        which = rng.integers(0, len(ds.digits), size=ds.num_digits)
        best = np.zeros((ds.height, ds.width)); own = np.zeros((ds.height, ds.width), np.int64)
        d_all, starts_k = [], []
        for k, d in enumerate(which):
            path = bounce_path(rng, ds.frames, ds.height - DIGIT, ds.width - DIGIT, ds.speed)
            starts_k.append(path[0])
            y, x = path[0]
            patch = ds.digits[d].astype(float)
            reg, o = best[y:y + DIGIT, x:x + DIGIT], own[y:y + DIGIT, x:x + DIGIT]
            m = (patch > reg) & (patch > 30)
            reg[m] = patch[m]; o[m] = k + 1
            d_all.append((path[0][None] - path[1:]).T)  # (2, T-1)
        # layers in an order the decoder can see: by the digit's frame-0 column, then row (painting order is not)
        starts = [tuple(p0) for p0 in starts_k]
        order = sorted(range(len(which)), key=lambda k: (starts[k][1], starts[k][0]))
        relabel = np.zeros(len(which) + 1, np.int64)
        for new_k, k in enumerate(order):
            relabel[k + 1] = new_k + 1
        owners.append(relabel[own]); disp.append(np.stack([d_all[k] for k in order]))
    return batch(ds, step, bs), torch.from_numpy(np.stack(owners)), torch.from_numpy(np.stack(disp)).float()


def batch(ds, step, bs):
    clips = [ds.clip(step * bs + i).video for i in range(bs)]
    x = torch.from_numpy(np.stack(clips)).float().div(127.5).sub(1)
    return rearrange(x, "b t h w c -> b c t h w")


def evaluate(model, n=16, frames=33):
    from arvid.eval.generation import warping_error
    from arvid.eval.tokenizer import psnr
    ds = MovingMNIST(frames=frames, split="eval", seed=1)
    model.eval()
    ps, we, wr, ps17 = [], [], [], []
    for i in range(0, n, 8):
        x = batch(ds, i // 8, 8)
        rec = model.reconstruct(x)
        real = ((x + 1) * 127.5).round().clamp(0, 255).byte()[:, 0].numpy()
        out = ((rec + 1) * 127.5).round().clamp(0, 255).byte()[:, 0].numpy()
        for r, o in zip(real, out):
            ps.append(psnr(o, r)); ps17.append(psnr(o[:17], r[:17]))
            we.append(warping_error(o)); wr.append(warping_error(r))
    model.train()
    return dict(psnr33=float(np.mean(ps)), psnr17=float(np.mean(ps17)), warp_ratio=float(np.mean(we) / np.mean(wr)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", default="xattn")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=100000)
    ap.add_argument("--minutes", type=float, default=25)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--bs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--levels", default="8,6,5")
    ap.add_argument("--latent-down", type=int, default=1)
    ap.add_argument("--real-ref", type=float, default=0.5)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--flow-weight", type=float, default=0.5)
    ap.add_argument("--init", default=None)
    ap.add_argument("--freeze-encoder", action="store_true")
    ap.add_argument("--warp-weight", type=float, default=0.0)
    ap.add_argument("--tv-weight", type=float, default=0.0)
    ap.add_argument("--assign-weight", type=float, default=0.0)
    ap.add_argument("--oracle", action="store_true")
    ap.add_argument("--vel-attn", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    os.makedirs(a.out, exist_ok=True)
    model = RefTok(a.variant, tuple(int(v) for v in a.levels.split(",")), a.latent_down)
    model.vel_attn = a.vel_attn
    if a.freeze_encoder:  # codes stay fixed: everything the encoder reads is frozen (the reference trunk included)
        enc_side = ["ref.conv_in", "ref.downs", "ref.enc_out", "ref_down", "ref_enc4", "encoder.", "enc_down", "enc_norm",
                    "enc_out", "xa_enc", "enc_flow"]
        for n, p in model.named_parameters():
            if any(n.startswith(k) for k in enc_side):
                p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    print("trainable params", sum(p.numel() for p in params), flush=True)
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
    start = 0
    if a.init:
        own = model.state_dict()
        sd = {k: v for k, v in torch.load(a.init)["model"].items() if k in own and own[k].shape == v.shape}
        missing = model.load_state_dict(sd, strict=False).missing_keys
        print("missing", missing, flush=True)
        if a.variant == "mvp" and "enc_prev.conv.weight" in missing:  # the head now predicts a change of the previous flow
            nn.init.zeros_(model.flow_head.conv.weight); nn.init.zeros_(model.flow_head.conv.bias)
    if a.resume and os.path.exists(f"{a.out}/ckpt.pt"):
        ck = torch.load(f"{a.out}/ckpt.pt")
        model.load_state_dict(ck["model"]); opt.load_state_dict(ck["opt"]); start = ck["step"]
    ds = MovingMNIST(frames=a.frames, split="train", seed=0)
    log = open(f"{a.out}/log.jsonl", "a")
    t0 = time.time()
    gen = torch.Generator().manual_seed(1)
    for step in range(start, a.steps):
        lr = a.lr * min(1, (step + 1) / 50)
        for g in opt.param_groups: g["lr"] = lr
        if a.oracle:
            x, owner, true_disp = oracle_batch(ds, step, a.bs)
        else:
            x = batch(ds, step, a.bs)
        with torch.no_grad():
            f0 = model.base.decode(model.base.encode(x[:, :, :1]))[:, :, 0]
        use_real = (torch.rand(a.bs, generator=gen) < a.real_ref).view(-1, 1, 1, 1)
        ref = torch.where(use_real, x[:, :, 0], f0)
        rec, codes, aux = model(x, ref)
        tgt = x[:, :, 1:]
        mse = F.mse_loss(rec, tgt)
        loss = mse + 0.2 * F.l1_loss(rec, tgt) + aux
        if a.variant == "mvl" and a.oracle:  # upper bound: the generator's own objects and motions
            v = model.last_flow[:, :2]  # (B, 2 layers, 2, T)
            ferr = (v - true_disp).abs().mean() / 8
            loss = loss + a.flow_weight * ferr
            logits = F.interpolate(model.assign(model.feats_raw0), size=owner.shape[-2:], mode="bilinear", align_corners=False)
            loss = loss + a.assign_weight * F.cross_entropy(logits, owner)
            if a.warp_weight:
                loss = loss + a.warp_weight * F.mse_loss(model.all_warped, tgt)
        elif a.variant == "mvl":  # k-means: each cell's block-matched flow pulls the nearest layer's displacement
            fl, wt = model.bm  # (B, 2, T, 16, 16), (B, 1, T, 16, 16)
            v = model.last_flow[..., None, None]  # (B, K, 2, T, 1, 1)
            dist = (fl[:, None] - v).abs().sum(2)  # (B, K, T, 16, 16)
            ferr = (wt[:, 0] * dist.min(1).values).sum() / (2 * wt.sum().clamp(min=1)) / 8
            loss = loss + a.flow_weight * ferr
            if a.warp_weight:
                loss = loss + a.warp_weight * F.mse_loss(model.all_warped, tgt)
            if a.assign_weight:  # the reference pixels each matched cell came from belong to the cell's nearest layer
                loss = loss + a.assign_weight * assign_loss(model, x[:, :, 0], fl, wt, dist)
        elif a.variant in ("mv", "mvp"):
            fl, wt = model.bm
            ferr = (wt * (model.last_flow - fl).abs()).sum() / (2 * wt.sum().clamp(min=1)) / 8
            loss = loss + a.flow_weight * ferr
            if a.tv_weight:  # piecewise-constant flow: a digit moves as one piece
                f = model.last_flow / 8  # (B, 2, T, 16, 16)
                tv = (f[..., 1:, :] - f[..., :-1, :]).abs().mean() + (f[..., :, 1:] - f[..., :, :-1]).abs().mean()
                loss = loss + a.tv_weight * tv
            if a.warp_weight:  # the warped reference alone must match too: the flow cannot lean on the direct path
                loss = loss + a.warp_weight * F.mse_loss(model.all_warped, tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 10 == 0:
            el = time.time() - t0
            rec_ = dict(step=step, loss=loss.item(), psnr=10 * math.log10(4 / mse.item()), s=el)
            if a.variant in ("mv", "mvp", "mvl"):
                rec_["flow_err_px"] = ferr.item() * 8
            print(json.dumps(rec_), flush=True)
        done = (time.time() - t0) / 60 > a.minutes
        if (step + 1) % a.eval_every == 0 or done:
            ev = evaluate(model)
            ev.update(step=step + 1, minutes=(time.time() - t0) / 60)
            print("EVAL", json.dumps(ev), flush=True)
            log.write(json.dumps(ev) + "\n"); log.flush()
            torch.save(dict(model=model.state_dict(), opt=opt.state_dict(), step=step + 1), f"{a.out}/ckpt.pt")
        if done:
            break


if __name__ == "__main__":
    main()
