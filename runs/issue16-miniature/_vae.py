"""The probes' shared piece: the miniature VAE's encoder and decoder from an engine checkpoint's
trained.safetensors (keys `mods.encoder.*`, `mods.decoder.*`), in eval mode, on one thread."""
import torch
from safetensors.torch import load_file

from neocompress.miniature.configs import vae_config
from neocompress.models.pyramid_flow.vae import CausalVAEDecoder, CausalVAEEncoder

torch.set_num_threads(1)


def load_vae(path):
    sd = load_file(str(path))
    enc, dec = CausalVAEEncoder(vae_config()).eval(), CausalVAEDecoder(vae_config()).eval()
    enc.load_state_dict({k[len("mods.encoder."):]: v for k, v in sd.items() if k.startswith("mods.encoder.")})
    dec.load_state_dict({k[len("mods.decoder."):]: v for k, v in sd.items() if k.startswith("mods.decoder.")})
    return enc, dec
