"""BiCT forward-compatible transformation psi: old embedding -> new embedding space.

After a backward-compatible new model is trained, the stored OLD gallery embeddings (images no longer
accessible) are upgraded by psi, an MLP trained on training images to map phi_old(x) onto phi_new(x):

    psi(o) = W_2 relu(W_1 o + b_1) + b_2            (num_layers=2; hidden 2048 as in ml-fct)
    'new_classifier' (default): L = CE(W_new psi(phi_old(x)) + b_new, y)   (new classifier frozen)
                                    [+ regression_weight * regression]
    'regression':               L = mean ||psi(phi_old(x)) - phi_new(x)||^2   (or 1 - cos)

The objective is recorded with psi (``psi.objective``, saved by :func:`save_transformation`) so that every
result of an upgraded gallery can name it.

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
        self.objective: Optional[str] = None   # psi's training objective, when known
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
                            new: Optional[torch.Tensor] = None,
                            hidden_dim: int = 2048,
                            num_layers: int = 2,
                            residual: bool = False,
                            kind: str = 'mse',
                            epochs: int = 50,
                            batch_size: int = 256,
                            lr: float = 5e-4,
                            seed: int = 0,
                            objective: str = 'new_classifier',
                            labels: Optional[torch.Tensor] = None,
                            new_weight: Optional[torch.Tensor] = None,
                            new_bias: Optional[torch.Tensor] = None,
                            regression_weight: float = 0.0,
                            new_dim: Optional[int] = None) -> BiCTTransformation:
    """Train psi on embeddings of the same training items (Adam, as in ml-fct).

    Args:
        old: (N, D_old) old-model embeddings; new: (N, D_new) new-model embeddings of the same items
            (needed by 'regression' and by a non-zero ``regression_weight``).
        kind: 'mse' or 'cosine' (see :func:`bict_transform_loss`).
        objective: 'regression' (psi(old) -> new) or 'new_classifier' (CE through the frozen new
            classifier ``new_weight`` (C, D_new) / ``new_bias`` (C,) with ``labels`` (N,)).
        regression_weight: weight of the regression added to 'new_classifier'.
        new_dim: output dim when ``new`` is not given (default: ``new_weight.shape[1]``).
        epochs, batch_size, lr, seed: optimisation settings (seeded shuffling and init).
    """
    from ..losses.compatible import BICT_OBJECTIVES, bict_classifier_loss, bict_transform_loss
    if objective not in BICT_OBJECTIVES:
        raise ValueError(f'fit_bict_transformation: objective must be one of {BICT_OBJECTIVES}, '
                         f'got {objective!r}')
    use_reg = objective == 'regression' or regression_weight != 0
    if old.dim() != 2 or (new is not None and (new.dim() != 2 or old.shape[0] != new.shape[0])):
        raise ValueError('fit_bict_transformation: old and new must be (N, D) with the same N, got '
                         f'{tuple(old.shape)} and {None if new is None else tuple(new.shape)}')
    if use_reg and new is None:
        raise ValueError('fit_bict_transformation: the regression needs `new` embeddings')
    if objective == 'new_classifier' and (labels is None or new_weight is None):
        raise ValueError("fit_bict_transformation: objective 'new_classifier' needs labels and the new "
                         'classifier (new_weight, new_bias)')
    out_dim = new.shape[1] if new is not None else (new_dim or new_weight.shape[1])
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        psi = BiCTTransformation(old.shape[1], out_dim, hidden_dim, num_layers, residual)
    opt = torch.optim.Adam(psi.parameters(), lr=lr)
    old = old.float()
    new = None if new is None else new.float()
    for _ in range(epochs):
        perm = torch.randperm(old.shape[0], generator=gen)
        for start in range(0, old.shape[0], batch_size):
            idx = perm[start:start + batch_size]
            pred = psi(old[idx])
            if objective == 'regression':
                loss = bict_transform_loss(pred, new[idx], kind)
            else:
                loss = bict_classifier_loss(pred, labels[idx], new_weight.float(),
                                            None if new_bias is None else new_bias.float())
                if regression_weight != 0:
                    loss = loss + regression_weight * bict_transform_loss(pred, new[idx], kind)
            opt.zero_grad()
            loss.backward()
            opt.step()
    psi.objective = objective
    return psi.eval()


def save_transformation(path: str, psi: BiCTTransformation) -> None:
    """Write psi with its constructor arguments (read back with :func:`load_transformation`)."""
    lin = [m for m in psi.mlp if isinstance(m, nn.Linear)]
    cfg = dict(old_dim=psi.old_dim, new_dim=psi.new_dim, hidden_dim=lin[0].out_features if len(lin) > 1
               else 1, num_layers=len(lin), residual=psi.residual)
    from mmkd_plugins.utils.safe_output import atomic_torch_save
    atomic_torch_save(dict(bict_cfg=cfg, state_dict=psi.state_dict(), objective=psi.objective), path)


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
    ``bict_cfg`` is given). ``psi.objective`` is the training objective when the file records it."""
    import os.path as osp
    if not osp.isfile(path):
        raise FileNotFoundError(f'BiCT transformation checkpoint not found: {path}')
    from mmkd_plugins.utils.safe_load import load_local_checkpoint  # weights-only + allowlist
    ckpt = load_local_checkpoint(path, map_location='cpu')
    objective = None
    if isinstance(ckpt, dict) and 'bict_cfg' in ckpt:
        cfg, state = dict(ckpt['bict_cfg']), ckpt['state_dict']
        objective = ckpt.get('objective')
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
        objective = _objective_from_checkpoint(ckpt)
    psi = BiCTTransformation(**cfg)
    psi.load_state_dict(state)
    psi.objective = objective
    return psi.eval()


def _objective_from_checkpoint(ckpt) -> Optional[str]:
    """The BiCT objective of a training checkpoint: from the config text mmengine stores in its meta
    (``BiCTTransformLoss(objective=...)``; its default when the config does not set it)."""
    import re
    cfg_text = ckpt.get('meta', {}).get('cfg') if isinstance(ckpt, dict) else None
    if not isinstance(cfg_text, str) or 'BiCTTransformLoss' not in cfg_text:
        return None
    found = re.findall(r"objective\s*[=:]\s*['\"](new_classifier|regression)['\"]", cfg_text)
    if len(set(found)) > 1:
        return None
    return found[0] if found else 'new_classifier'
