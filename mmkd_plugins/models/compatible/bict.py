"""BiCT forward-compatible transformation psi: old embedding -> new embedding space.

After a backward-compatible new model is trained, the stored OLD gallery embeddings (images no longer
accessible) are upgraded by psi, an MLP trained on training images to map phi_old(x) onto phi_new(x):

    psi(o) = W_2 relu(W_1 o + b_1) + b_2            (num_layers=2; hidden 2048 as in ml-fct)
    L      = mean ||psi(phi_old(x)) - phi_new(x)||^2   (or 1 - cos)

It is trained either through a config (``BiCTTransformStudent`` as the student of
:class:`~mmkd_plugins.models.compatible.CompatibleDistiller`, the new model as the frozen teacher) or
directly from two embedding files of the same training images (:func:`fit_bict_transformation`).
"""
from typing import Dict, Optional

import torch
import torch.nn as nn
from mmengine.registry import MODELS


@MODELS.register_module()
class BiCTTransformation(nn.Module):
    """MLP psi: (N, old_dim) -> (N, new_dim).

    Args:
        old_dim: old embedding dimension.
        new_dim: new embedding dimension.
        hidden_dim: width of the hidden layers (ml-fct: 2048).
        num_layers: number of Linear layers (1 = linear map).
        residual: add ``match_dim(o, new_dim)`` to the output (psi learns a correction; helpful when the
            new model is backward compatible so new ~ old already).
    """

    def __init__(self,
                 old_dim: int,
                 new_dim: int,
                 hidden_dim: int = 2048,
                 num_layers: int = 2,
                 residual: bool = False) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f'BiCTTransformation: num_layers must be >= 1, got {num_layers}')
        self.old_dim, self.new_dim, self.residual = old_dim, new_dim, residual
        dims = [old_dim] + [hidden_dim] * (num_layers - 1) + [new_dim]
        layers = []
        for i in range(num_layers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < num_layers - 1:
                layers.append(nn.ReLU(inplace=True))
        self.mlp = nn.Sequential(*layers)

    def forward(self, old: torch.Tensor) -> torch.Tensor:
        if old.dim() != 2 or old.shape[1] != self.old_dim:
            raise ValueError(f'BiCTTransformation expects (N, {self.old_dim}) old embeddings, '
                             f'got shape {tuple(old.shape)}')
        out = self.mlp(old)
        if self.residual:
            from ..losses.compatible import match_dim  # not at top: losses import this package
            out = out + match_dim(old, self.new_dim)
        return out


def fit_bict_transformation(old: torch.Tensor,
                            new: torch.Tensor,
                            hidden_dim: int = 2048,
                            num_layers: int = 2,
                            residual: bool = False,
                            kind: str = 'mse',
                            epochs: int = 50,
                            batch_size: int = 256,
                            lr: float = 5e-4,
                            seed: int = 0) -> BiCTTransformation:
    """Train psi on paired embeddings of the same training items (Adam, as in ml-fct).

    Args:
        old: (N, D_old) old-model embeddings; new: (N, D_new) new-model embeddings of the same items.
        kind: 'mse' or 'cosine' (see :func:`bict_transform_loss`).
        epochs, batch_size, lr, seed: optimisation settings (seeded shuffling and init).
    """
    if old.dim() != 2 or new.dim() != 2 or old.shape[0] != new.shape[0]:
        raise ValueError('fit_bict_transformation: old and new must be (N, D) with the same N, got '
                         f'{tuple(old.shape)} and {tuple(new.shape)}')
    from ..losses.compatible import bict_transform_loss
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        psi = BiCTTransformation(old.shape[1], new.shape[1], hidden_dim, num_layers, residual)
    opt = torch.optim.Adam(psi.parameters(), lr=lr)
    old, new = old.float(), new.float()
    for _ in range(epochs):
        perm = torch.randperm(old.shape[0], generator=gen)
        for start in range(0, old.shape[0], batch_size):
            idx = perm[start:start + batch_size]
            loss = bict_transform_loss(psi(old[idx]), new[idx], kind)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return psi.eval()


def save_transformation(path: str, psi: BiCTTransformation) -> None:
    """Write psi with its constructor arguments (read back with :func:`load_transformation`)."""
    lin = [m for m in psi.mlp if isinstance(m, nn.Linear)]
    cfg = dict(old_dim=psi.old_dim, new_dim=psi.new_dim, hidden_dim=lin[0].out_features if len(lin) > 1
               else 1, num_layers=len(lin), residual=psi.residual)
    torch.save(dict(bict_cfg=cfg, state_dict=psi.state_dict()), path)


def _strip_to_transformation(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Keep the ``...mlp.*`` entries of a (distiller) checkpoint state dict, prefix removed."""
    out = {}
    for key, val in state.items():
        pos = key.find('mlp.')
        if pos >= 0 and (pos == 0 or key[pos - 1] == '.'):
            out[key[pos:]] = val
    return out


def load_transformation(path: str, bict_cfg: Optional[dict] = None) -> BiCTTransformation:
    """Load psi from a file written by :func:`save_transformation` or from a training checkpoint of a
    config with ``BiCTTransformStudent`` (then the layer sizes are read from the weights unless
    ``bict_cfg`` is given)."""
    import os.path as osp
    if not osp.isfile(path):
        raise FileNotFoundError(f'BiCT transformation checkpoint not found: {path}')
    from mmkd_plugins.utils.safe_load import load_local_checkpoint  # weights-only + allowlist
    ckpt = load_local_checkpoint(path, map_location='cpu')
    if isinstance(ckpt, dict) and 'bict_cfg' in ckpt:
        cfg, state = dict(ckpt['bict_cfg']), ckpt['state_dict']
    else:
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
        state = _strip_to_transformation(state)
        weights = [state[k] for k in sorted(state, key=lambda k: int(k.split('.')[1]))
                   if k.endswith('weight')]
        if not weights:
            raise ValueError(f'{path}: no BiCT transformation weights (keys "...mlp.<i>.weight") found')
        cfg = dict(old_dim=weights[0].shape[1], new_dim=weights[-1].shape[0],
                   hidden_dim=weights[0].shape[0] if len(weights) > 1 else 1, num_layers=len(weights))
        cfg.update(bict_cfg or {})
    psi = BiCTTransformation(**cfg)
    psi.load_state_dict(state)
    return psi.eval()
