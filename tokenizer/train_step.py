"""One training step of the tokenizer: the generator (tokenizer) update, then the discriminator's.

Owns `TokenizerStep`, built once from the prepared parts (accelerate `Accelerator`, model, optimizer and
scheduler, `ModelEMA`, the loss settings; with the GAN on, the discriminator, its optimizer and scheduler,
and `LeCam`), and `last_layer` (the decoder weight the adaptive GAN weight uses).

- `generator(x, gan_on)`: pixel loss (L1/L2) + LPIPS (when given) + the model's `quantization_loss` + (when
  `gan_on`) the non-saturating GAN term, weighted fixed (`gan_weight`) or adaptively (VQGAN gradient ratio);
  backward, gradient clipping, optimizer and scheduler step, EMA update.
- `discriminator(x, recon)`: hinge loss + LeCam regulariser on real | detached reconstructions; backward,
  clipping, its optimizer and scheduler step.
- `__call__(x, gan_on)` does both (the discriminator only when `gan_on`) and returns the model output, the
  generator loss and the step's metrics (plain floats, in the order the JSON log writes them).
Nothing here knows about steps, epochs, checkpoints or logs (`train_loop`); one call is testable on a tiny model.
"""

from __future__ import annotations


def last_layer(model):
    """The decoder's last weight (for the adaptive GAN weight): `get_last_layer()` or the last conv weight."""
    if hasattr(model, "get_last_layer"):
        return model.get_last_layer()
    candidates = [p for n, p in model.named_parameters() if p.dim() == 4 and "decoder" in n]
    if not candidates:
        raise ValueError("loss.adaptive_gan_weight needs a decoder conv weight; set adaptive_gan_weight: false")
    return candidates[-1]


class TokenizerStep:
    """The generator and discriminator updates of one training step (see the module docstring)."""

    def __init__(self, accelerator, model, opt, sched, ema, loss, grad_clip: float, lpips=None,
                 disc=None, d_opt=None, d_sched=None, lecam=None):
        self.accelerator, self.model, self.opt, self.sched, self.ema = accelerator, model, opt, sched, ema
        self.loss, self.grad_clip, self.lpips = loss, grad_clip, lpips
        self.disc, self.d_opt, self.d_sched, self.lecam = disc, d_opt, d_sched, lecam
        self.raw_model = accelerator.unwrap_model(model)
        self.raw_disc = accelerator.unwrap_model(disc) if disc is not None else None

    def generator(self, x, gan_on: bool):
        """x: [B, 3, S, S] on the device. Returns (model output, generator loss, metrics)."""
        from .losses import adaptive_gan_weight, non_saturating_g_loss, pixel_loss

        acc, lc = self.accelerator, self.loss
        with acc.autocast():
            o = self.model(pixel_values=x)
            recon = o.reconstruction
            rec = lc.pixel_weight * pixel_loss(recon, x, lc.pixel)
            metrics = {"pixel": rec.item()}
            if self.lpips is not None:
                p = self.lpips(recon, x).mean()
                rec = rec + lc.lpips_weight * p
                metrics["lpips"] = p.item()
            loss = rec + o.quantization_loss.float()
            if gan_on:
                self.raw_disc.requires_grad_(False)
                g = non_saturating_g_loss(self.raw_disc(recon))
                w = lc.gan_weight
                if lc.adaptive_gan_weight:
                    w = w * adaptive_gan_weight(rec, g, last_layer(self.raw_model))
                loss = loss + w * g
                self.raw_disc.requires_grad_(True)
                metrics.update(g_loss=g.item(), gan_weight=float(w))
        acc.backward(loss)
        if self.grad_clip > 0:
            metrics["grad_norm"] = float(acc.clip_grad_norm_(self.model.parameters(), self.grad_clip))
        self.opt.step()
        self.sched.step()  # the next step's lr, from the clock as agreed at the end of the previous step
        self.opt.zero_grad(set_to_none=True)
        self.ema.update(self.raw_model)
        return o, loss, metrics

    def discriminator(self, x, recon) -> dict:
        """x, recon: [B, 3, S, S] (recon is detached here). Returns the discriminator's metrics."""
        import torch

        from .losses import hinge_d_loss

        acc, lc = self.accelerator, self.loss
        with acc.autocast():
            logits = self.disc(torch.cat([x, recon.detach()]))  # [2B, 1, h, w]
            real, fake = logits.float().chunk(2)
            reg = self.lecam(real, fake)
            d_loss = hinge_d_loss(real, fake) + lc.lecam_weight * reg
        self.lecam.update(real.detach(), fake.detach())
        acc.backward(d_loss)
        if self.grad_clip > 0:
            acc.clip_grad_norm_(self.disc.parameters(), self.grad_clip)
        self.d_opt.step()
        self.d_sched.step()
        self.d_opt.zero_grad(set_to_none=True)
        return {"d_loss": d_loss.item(), "lecam": reg.item(), "logits_real": real.mean().item(),
                "logits_fake": fake.mean().item()}

    def __call__(self, x, gan_on: bool):
        """Both updates; returns (model output, generator loss, metrics)."""
        o, loss, metrics = self.generator(x, gan_on)
        if gan_on:
            metrics.update(self.discriminator(x, o.reconstruction))
        return o, loss, metrics
