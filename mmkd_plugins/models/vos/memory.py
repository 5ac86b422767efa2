"""Memories for semi-supervised video object segmentation.

Two memories share one interface (:class:`BaseVOSMemory`):

* :class:`SWEMMemory` - the fixed-size memory of SWEM (Sequential Weighted EM, CVPR 2022). Per object
  slot and per class ``c in {bg, fg}`` it keeps ``L`` bases: keys ``kappa`` (Ck x L), values ``nu``
  (Cv x L) and masses ``zeta`` (L). Two banks exist: ``'first'`` (built from the frame where the
  object appears, never changed) and ``'update'`` (rebuilt at every frame by weighted EM whose prior is
  the previous ``'update'`` bank, or ``'first'`` for the first update). **The state size depends only
  on the number of objects, never on the number of frames.**
* :class:`GrowingMemory` - the STM-style baseline: every ``mem_every``-th frame is appended pixel by
  pixel (plus the first frame and, optionally, the previous frame as a temporary entry), so its size and
  the read-out cost grow linearly with the video length.

Both produce the same read-out (:func:`memory_readout`): an attention read of the values and SWEM's
permutation-invariant foreground/background feature, so the network on top is unchanged when the
memory is swapped.

Shapes used throughout: ``N`` object slots (batch x objects), ``Ck`` key channels, ``Cv`` value
channels, ``n`` pixels of a frame at stride 16, ``Q`` query pixels, ``M`` memory items, ``L`` bases.
Class index 0 is background, 1 is foreground.
"""
import math
from typing import Dict, Optional, Tuple

import torch
from mmengine.registry import MODELS
from torch import Tensor, nn

Bank = Dict[str, Tensor]


def l2_normalize(x: Tensor, dim: int, eps: float = 1e-6) -> Tensor:
    """``x / (||x||_2 + eps)`` along ``dim``."""
    return x / (torch.linalg.vector_norm(x, dim=dim, keepdim=True) + eps)


def em_masks(hard: Tensor, soft: Tensor) -> Tensor:
    """Class weights of SWEM's EM from a hard and a soft object mask (same resolution).

    ``m_fg = H * S`` and ``m_bg = (1 - H) * (1 - S)``: a pixel only counts fully when the hard and the
    soft mask agree.

    Args:
        hard: (N, 1, h, w) or (N, h, w) hard mask in {0, 1} (nearest-downsampled).
        soft: same shape, soft mask in [0, 1] (bilinear-downsampled probabilities).

    Returns:
        (N, 2, h*w) weights, class 0 = background, 1 = foreground.
    """
    if hard.shape != soft.shape:
        raise ValueError(f'em_masks: hard mask {tuple(hard.shape)} and soft mask '
                         f'{tuple(soft.shape)} must have the same shape')
    hard = hard.reshape(hard.shape[0], -1).to(soft.dtype)
    soft = soft.reshape(soft.shape[0], -1)
    return torch.stack([(1 - hard) * (1 - soft), hard * soft], dim=1)


def init_bases(num_slots: int, key_dim: int, value_dim: int, num_bases: int,
               device=None, dtype=torch.float32, generator: Optional[torch.Generator] = None) -> Bank:
    """Prior bases of a new object: ``kappa ~ N(0, 2/L)`` then L2-normalised, ``nu = 0``, ``zeta = 1e-6``.

    Returns:
        dict with ``kappa`` (N, 2, Ck, L), ``nu`` (N, 2, Cv, L), ``zeta`` (N, 2, L).
    """
    kappa = torch.randn(num_slots, 2, key_dim, num_bases, generator=generator,
                        dtype=dtype, device='cpu' if generator is not None else device)
    kappa = l2_normalize(kappa.to(device) * math.sqrt(2.0 / num_bases), dim=2)
    nu = torch.zeros(num_slots, 2, value_dim, num_bases, device=device, dtype=dtype)
    zeta = torch.full((num_slots, 2, num_bases), 1e-6, device=device, dtype=dtype)
    return dict(kappa=kappa, nu=nu, zeta=zeta)


def em_e_step(keys: Tensor, kappa: Tensor, weights: Tensor, tau: float) -> Tensor:
    """E step: ``z_{c,n,k} = softmax_k((x_n . kappa^_{c,k} - max_k) / tau) * w_{c,n}``.

    ``kappa^`` is ``kappa`` L2-normalised over channels; the pixel keys ``x_n`` are used as they are.

    Args:
        keys: (N, Ck, n) pixel keys ``x``.
        kappa: (N, 2, Ck, L) current bases.
        weights: (N, 2, n) pixel weights ``w``.
        tau: temperature.

    Returns:
        (N, 2, n, L) responsibilities ``z``.
    """
    logits = torch.einsum('nkp,nckl->ncpl', keys, l2_normalize(kappa, dim=2))
    logits = logits - logits.amax(dim=-1, keepdim=True)
    return torch.softmax(logits / tau, dim=-1) * weights.unsqueeze(-1)


def em_m_step(keys: Tensor, z: Tensor, kappa_prior: Tensor,
              zeta_prior: Tensor) -> Tuple[Tensor, Tensor]:
    """M step: ``zeta_{c,k} = zeta'_{c,k} + sum_n z_{c,n,k}`` and
    ``kappa_{c,k} = (zeta'_{c,k} kappa'_{c,k} + sum_n z_{c,n,k} x_n) / zeta_{c,k}`` (primes: prior).

    Args:
        keys: (N, Ck, n); z: (N, 2, n, L); kappa_prior: (N, 2, Ck, L); zeta_prior: (N, 2, L).

    Returns:
        ``kappa`` (N, 2, Ck, L) and ``zeta`` (N, 2, L).
    """
    zeta = zeta_prior + z.sum(dim=2)
    kappa = (zeta_prior.unsqueeze(2) * kappa_prior
             + torch.einsum('nkp,ncpl->nckl', keys, z)) / zeta.unsqueeze(2)
    return kappa, zeta


def em_w_step(keys: Tensor, kappa: Tensor, masks: Tensor, tau: float) -> Tensor:
    """W step: re-weight pixels by how badly the current bases explain them.

    ``s_{c,n} = sum_k exp((x^_n . kappa^_{c,k} - max_{c',k'}) / tau)``, ``p(c|n) = s_c / (s_bg + s_fg)``
    and ``w_{c,n} = m_{c,n} (1 - p(c|n))`` (the max is shared by both classes of a pixel, so the ratio is
    exact).

    Args:
        keys: (N, Ck, n); kappa: (N, 2, Ck, L); masks: (N, 2, n) class masks ``m``; tau: temperature.

    Returns:
        (N, 2, n) new weights.
    """
    logits = torch.einsum('nkp,nckl->ncpl', l2_normalize(keys, dim=1), l2_normalize(kappa, dim=2))
    peak = logits.amax(dim=-1, keepdim=True).amax(dim=1, keepdim=True)
    s = torch.exp((logits - peak) / tau).sum(dim=-1)  # N, 2, n
    prob = s / s.sum(dim=1, keepdim=True)
    return masks * (1 - prob)


def weighted_em(keys: Tensor, values: Tensor, masks: Tensor, prior: Bank, num_iters: int = 4,
                tau: float = 0.05, key_grad: bool = False) -> Bank:
    """One SWEM memory update for one frame (``T`` iterations of E, M and W steps, then values).

    ``w0 = m``; for ``t = 1..T``: E step, M step, and a W step when ``t < T``; finally
    ``nu_{c,k} = (zeta'_{c,k} nu'_{c,k} + sum_n z_{c,n,k} v_n) / zeta_{c,k}`` with the last ``z``.
    Gradient: as in the official code (``swe_step`` / ``swm_step`` / ``sww_step`` are all
    ``@torch.no_grad``) the E, M and W steps carry none, so ``kappa`` and ``zeta`` are constants and
    only the values ``nu`` get gradient (to ``values`` and the prior ``nu``). ``key_grad=True`` keeps the
    M step differentiable (to keys and the prior ``kappa``; a deviation, off by default).

    Args:
        keys: (N, Ck, n) keys of the frame at stride 16.
        values: (N, Cv, n) values of each object slot.
        masks: (N, 2, n) class masks from :func:`em_masks`.
        prior: bank dict (``kappa``, ``nu``, ``zeta``) used as the prior.
        num_iters: ``T`` >= 1.
        tau: temperature.
        key_grad: differentiate through the M step (default False = official).

    Returns:
        the new bank dict, same shapes as ``prior``.
    """
    if num_iters < 1:
        raise ValueError(f'weighted_em: num_iters must be >= 1, got {num_iters}')
    kappa_p, nu_p, zeta_p = prior['kappa'], prior['nu'], prior['zeta']
    if keys.shape[0] != kappa_p.shape[0] or keys.shape[1] != kappa_p.shape[2]:
        raise ValueError(f'weighted_em: keys {tuple(keys.shape)} do not match bases '
                         f'{tuple(kappa_p.shape)} (expected (N, Ck, n) with N slots, Ck channels)')
    if values.shape[1] != nu_p.shape[2] or values.shape[0] != keys.shape[0]:
        raise ValueError(f'weighted_em: values {tuple(values.shape)} do not match value bases '
                         f'{tuple(nu_p.shape)}')
    if masks.shape != (keys.shape[0], 2, keys.shape[2]):
        raise ValueError(f'weighted_em: masks {tuple(masks.shape)} must be (N, 2, n) = '
                         f'{(keys.shape[0], 2, keys.shape[2])}')
    weights = masks.detach()
    kappa = kappa_p
    z = None
    for t in range(num_iters):
        with torch.no_grad():
            z = em_e_step(keys, kappa, weights, tau)
        with torch.set_grad_enabled(key_grad and torch.is_grad_enabled()):
            kappa, zeta = em_m_step(keys, z, kappa_p, zeta_p)
        if t < num_iters - 1:
            with torch.no_grad():
                weights = em_w_step(keys, kappa, masks, tau)
    zeta_v = zeta if key_grad else zeta.detach()
    nu = (zeta_p.detach().unsqueeze(2) * nu_p
          + torch.einsum('nvp,ncpl->ncvl', values, z)) / zeta_v.unsqueeze(2)
    return dict(kappa=kappa, nu=nu, zeta=zeta)


def permutation_invariant_feature(exp_aff: Tensor, item_class: Tensor, top_l: int) -> Tensor:
    """SWEM's permutation-invariant feature.

    For each class the ``l`` largest affinities ``e`` (sorted, descending) are summed cumulatively,
    ``C_c(i) = sum_{j<=i} e_c^(j)``; ``f_i = C_bg(i) / (C_bg(i) + C_fg(i))`` and ``S = [f, 1 - f]``.
    A class with fewer than ``l`` items is padded with zeros.

    Args:
        exp_aff: (N, M, Q) non-negative affinities ``e`` (0 for invalid items).
        item_class: (N, M) class index (0 bg, 1 fg) of each memory item.
        top_l: ``l``.

    Returns:
        (N, 2 l, Q) feature ``[f, 1 - f]``.
    """
    n, m, q = exp_aff.shape
    cums = []
    for c in (0, 1):
        e_c = exp_aff * (item_class == c).unsqueeze(-1).to(exp_aff.dtype)
        if m < top_l:
            e_c = torch.cat([e_c, e_c.new_zeros(n, top_l - m, q)], dim=1)
        top = torch.topk(e_c, top_l, dim=1, largest=True, sorted=True).values
        cums.append(torch.cumsum(top, dim=1))
    f = cums[0] / (cums[0] + cums[1]).clamp_min(1e-12)
    return torch.cat([f, 1 - f], dim=1)


def memory_readout(query: Tensor, mem_keys: Tensor, mem_values: Tensor, item_class: Tensor,
                   tau: float = 0.05, top_l: int = 64,
                   item_valid: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """Attention read-out of a memory.

    ``a_{m,q} = kappa^_m . q^_q``, ``e = exp((a - max_m a) / tau)`` (invalid items get ``e = 0``),
    ``P = e / sum_m e`` and ``r_q = sum_m nu_m P_{m,q}``; plus :func:`permutation_invariant_feature`.

    Args:
        query: (N, Ck, Q) query keys (normalised here).
        mem_keys: (N, Ck, M) memory keys (normalised here).
        mem_values: (N, Cv, M) memory values.
        item_class: (N, M) long, 0 = background item, 1 = foreground item.
        tau: temperature.
        top_l: length of the permutation-invariant feature (per half).
        item_valid: optional (N, M) bool; False items are ignored.

    Returns:
        read-out (N, Cv, Q) and permutation-invariant feature (N, 2 top_l, Q).
    """
    if query.shape[:2] != mem_keys.shape[:2]:
        raise ValueError(f'memory_readout: query {tuple(query.shape)} and memory keys '
                         f'{tuple(mem_keys.shape)} must agree in (N, Ck)')
    aff = torch.einsum('nkm,nkq->nmq', l2_normalize(mem_keys, 1), l2_normalize(query, 1))
    if item_valid is not None:
        aff = aff.masked_fill(~item_valid.unsqueeze(-1), float('-inf'))
    peak = aff.amax(dim=1, keepdim=True)
    exp_aff = torch.exp((aff - peak) / tau)
    prob = exp_aff / exp_aff.sum(dim=1, keepdim=True)
    readout = torch.einsum('nvm,nmq->nvq', mem_values, prob)
    return readout, permutation_invariant_feature(exp_aff, item_class, top_l)


class BaseVOSMemory(nn.Module):
    """Interface of a VOS memory (no learnable parameters; the state lives in plain attributes).

    Life cycle for one video (or one training clip): :meth:`reset`; :meth:`add_objects` on the frame
    where objects appear (creates their slots); then per frame :meth:`read` (before the frame is
    segmented) and :meth:`memorize` (after). All tensors are per object slot ``N``; masks and keys are
    at the key resolution (stride 16).
    """

    def __init__(self, tau: float = 0.05, top_l: int = 64) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f'{type(self).__name__}: tau must be > 0, got {tau}')
        self.tau = tau
        self.top_l = top_l
        self.frame_index = 0

    @property
    def num_slots(self) -> int:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def add_objects(self, keys: Tensor, values: Tensor, hard: Tensor, soft: Tensor) -> None:
        """Create slots for new objects from the frame where they appear (keys/values/masks of the
        new slots only: (N_new, Ck, h, w), (N_new, Cv, h, w), (N_new, 1, h, w) x2)."""
        raise NotImplementedError

    def memorize(self, keys: Tensor, values: Tensor, hard: Tensor, soft: Tensor) -> None:
        """Store a segmented frame for all existing slots (shapes as in :meth:`add_objects`)."""
        raise NotImplementedError

    def read(self, query: Tensor) -> Tuple[Tensor, Tensor]:
        """(N, Ck, h, w) query keys -> read-out (N, Cv, h, w), feature (N, 2 top_l, h, w)."""
        raise NotImplementedError

    def state_tensors(self) -> Dict[str, Tensor]:
        """The tensors that make up the state (for size reports)."""
        raise NotImplementedError

    def state_numel(self) -> int:
        """Number of stored scalars."""
        return sum(int(t.numel()) for t in self.state_tensors().values())

    def state_nbytes(self) -> int:
        return sum(int(t.numel() * t.element_size()) for t in self.state_tensors().values())

    def _check(self, keys: Tensor, values: Tensor, hard: Tensor, soft: Tensor, n: int) -> None:
        name = type(self).__name__
        if keys.dim() != 4 or values.dim() != 4:
            raise ValueError(f'{name}: keys and values must be (N, C, h, w), got '
                             f'{tuple(keys.shape)} and {tuple(values.shape)}')
        if keys.shape[0] != n or values.shape[0] != n:
            raise ValueError(f'{name}: expected {n} object slots, got keys {tuple(keys.shape)} '
                             f'and values {tuple(values.shape)}')
        if keys.shape[-2:] != values.shape[-2:] or hard.shape != (n, 1) + tuple(keys.shape[-2:]) \
                or soft.shape != hard.shape:
            raise ValueError(f'{name}: keys {tuple(keys.shape)}, values {tuple(values.shape)}, hard '
                             f'{tuple(hard.shape)} and soft {tuple(soft.shape)} masks must share '
                             f'(N, ., h, w) with masks (N, 1, h, w)')

    def _check_query(self, query: Tensor) -> None:
        if self.num_slots == 0:
            raise RuntimeError(f'{type(self).__name__}.read: the memory is empty; call add_objects '
                               'first')
        if query.dim() != 4 or query.shape[0] != self.num_slots:
            raise ValueError(f'{type(self).__name__}.read: query must be (N={self.num_slots}, Ck, h, '
                             f'w), got {tuple(query.shape)}')


@MODELS.register_module()
class SWEMMemory(BaseVOSMemory):
    """SWEM's fixed-size memory (see the module docstring).

    State (``N`` slots): ``first`` and ``update`` banks, each ``kappa`` (N, 2, Ck, L), ``nu`` (N, 2, Cv,
    L), ``zeta`` (N, 2, L), and ``has_update`` (N,) bool (a slot's ``update`` bank is empty until the
    frame after it was added). Its size is ``2 * N * 2 * L * (Ck + Cv + 1)`` scalars whatever the video
    length.

    Args:
        key_dim: ``Ck``. value_dim: ``Cv``.
        num_bases: ``L`` bases per class and bank (128 in the paper).
        num_iters: ``T`` EM iterations per frame (4).
        tau: temperature (0.05).
        top_l: permutation-invariant feature length (64); classes with fewer items are zero-padded.
        init_seed: if set, the random prior bases of new objects come from a generator re-seeded at
            every :meth:`reset`, so inference is reproducible; ``None`` uses torch's global RNG.
        key_grad: backpropagate through the M step (keys / bases). Default False: as in the official
            code no gradient passes the E/M/W steps, only the values ``nu`` carry gradient.
    """

    def __init__(self, key_dim: int = 128, value_dim: int = 512, num_bases: int = 128,
                 num_iters: int = 4, tau: float = 0.05, top_l: int = 64,
                 init_seed: Optional[int] = None, key_grad: bool = False) -> None:
        super().__init__(tau=tau, top_l=top_l)
        self.key_grad = key_grad
        self.key_dim, self.value_dim = key_dim, value_dim
        self.num_bases, self.num_iters = num_bases, num_iters
        self.init_seed = init_seed
        self.reset()

    @property
    def num_slots(self) -> int:
        return 0 if self.first is None else int(self.first['kappa'].shape[0])

    def reset(self) -> None:
        self.first: Optional[Bank] = None
        self.update_bank: Optional[Bank] = None
        self.has_update: Optional[Tensor] = None
        self.frame_index = 0
        self._generator = (torch.Generator().manual_seed(self.init_seed)
                           if self.init_seed is not None else None)

    def _em(self, keys: Tensor, values: Tensor, hard: Tensor, soft: Tensor, prior: Bank) -> Bank:
        return weighted_em(keys.flatten(2), values.flatten(2), em_masks(hard, soft), prior,
                           self.num_iters, self.tau, self.key_grad)

    def add_objects(self, keys: Tensor, values: Tensor, hard: Tensor, soft: Tensor) -> None:
        n = keys.shape[0]
        self._check(keys, values, hard, soft, n)
        if keys.shape[1] != self.key_dim or values.shape[1] != self.value_dim:
            raise ValueError(f'SWEMMemory: expected {self.key_dim} key and {self.value_dim} value '
                             f'channels, got {keys.shape[1]} and {values.shape[1]}')
        prior = init_bases(n, self.key_dim, self.value_dim, self.num_bases, keys.device, keys.dtype,
                           self._generator)
        bank = self._em(keys, values, hard, soft, prior)
        empty = {k: torch.zeros_like(v) for k, v in bank.items()}
        if self.first is None:
            self.first, self.update_bank = bank, empty
            self.has_update = torch.zeros(n, dtype=torch.bool, device=keys.device)
        else:
            self.first = {k: torch.cat([self.first[k], bank[k]]) for k in bank}
            self.update_bank = {k: torch.cat([self.update_bank[k], empty[k]]) for k in bank}
            self.has_update = torch.cat([self.has_update, self.has_update.new_zeros(n)])

    def memorize(self, keys: Tensor, values: Tensor, hard: Tensor, soft: Tensor) -> None:
        self._check(keys, values, hard, soft, self.num_slots)
        sel = self.has_update.view(-1, 1, 1, 1)
        prior = {k: torch.where(sel if self.first[k].dim() == 4 else sel[..., 0],
                                self.update_bank[k], self.first[k]) for k in self.first}
        self.update_bank = self._em(keys, values, hard, soft, prior)
        self.has_update = torch.ones_like(self.has_update)
        self.frame_index += 1

    def read(self, query: Tensor) -> Tuple[Tensor, Tensor]:
        self._check_query(query)
        n, _, h, w = query.shape
        L = self.num_bases
        banks = [self.first]
        valid = [torch.ones(n, 2 * L, dtype=torch.bool, device=query.device)]
        if bool(self.has_update.any()):
            banks.append(self.update_bank)
            valid.append(self.has_update.view(-1, 1).expand(-1, 2 * L))
        keys = torch.cat([b['kappa'].transpose(1, 2).flatten(2) for b in banks], dim=2)
        values = torch.cat([b['nu'].transpose(1, 2).flatten(2) for b in banks], dim=2)
        cls = torch.arange(2, device=query.device).repeat_interleave(L).repeat(len(banks))
        item_valid = torch.cat(valid, dim=1)
        readout, feat = memory_readout(query.flatten(2), keys, values,
                                       cls.unsqueeze(0).expand(n, -1), self.tau, self.top_l,
                                       None if bool(item_valid.all()) else item_valid)
        return readout.view(n, -1, h, w), feat.view(n, -1, h, w)

    def state_tensors(self) -> Dict[str, Tensor]:
        if self.first is None:
            return {}
        out = {f'first.{k}': v for k, v in self.first.items()}
        out.update({f'update.{k}': v for k, v in self.update_bank.items()})
        return out


@MODELS.register_module()
class GrowingMemory(BaseVOSMemory):
    """STM-style growing memory (the baseline): every pixel of every ``mem_every``-th frame is kept.

    State (``N`` slots, ``M`` items): ``keys`` (N, Ck, M), ``values`` (N, Cv, M), ``item_class``
    (N, M) (hard mask at stride 16: 1 fg, 0 bg) and ``item_valid`` (N, M) (False for frames stored before
    a slot existed). Items: the frame where the slot was added, then frames ``t`` with
    ``t % mem_every == 0`` counted from the first :meth:`add_objects`, and, with ``include_last``, the
    previous frame as a temporary entry. ``M`` grows linearly with the number of frames.

    Args:
        mem_every: period ``k`` of stored frames (5 in STM).
        include_last: also read the previous frame (temporary memory, as STM does).
        tau, top_l: read-out temperature and permutation-invariant feature length (as SWEM).
    """

    def __init__(self, mem_every: int = 5, include_last: bool = True, tau: float = 0.05,
                 top_l: int = 64) -> None:
        super().__init__(tau=tau, top_l=top_l)
        if mem_every < 1:
            raise ValueError(f'GrowingMemory: mem_every must be >= 1, got {mem_every}')
        self.mem_every = mem_every
        self.include_last = include_last
        self.reset()

    @property
    def num_slots(self) -> int:
        return 0 if self.keys is None else int(self.keys.shape[0])

    def reset(self) -> None:
        self.keys: Optional[Tensor] = None
        self.values: Optional[Tensor] = None
        self.item_class: Optional[Tensor] = None
        self.item_valid: Optional[Tensor] = None
        self.last: Optional[Dict[str, Tensor]] = None
        self.frame_index = 0

    @staticmethod
    def _items(keys, values, hard):
        return (keys.flatten(2), values.flatten(2), (hard.flatten(1) > 0.5).long(),
                torch.ones(hard.shape[0], hard[0].numel(), dtype=torch.bool, device=hard.device))

    def add_objects(self, keys: Tensor, values: Tensor, hard: Tensor, soft: Tensor) -> None:
        n = keys.shape[0]
        self._check(keys, values, hard, soft, n)
        k, v, c, ok = self._items(keys, values, hard)
        if self.keys is None:
            self.keys, self.values, self.item_class, self.item_valid = k, v, c, ok
            return
        if keys.shape[1] != self.keys.shape[1] or values.shape[1] != self.values.shape[1]:
            raise ValueError('GrowingMemory.add_objects: channel numbers differ from the stored ones')
        m_old, m_new = self.keys.shape[2], k.shape[2]

        def pad_old(t, fill):  # existing slots: the new block is invalid for them
            return torch.cat([t, t.new_full(t.shape[:-1] + (m_new,), fill)], dim=-1)

        def pad_new(t, fill):  # new slots: all the old items are invalid for them
            return torch.cat([t.new_full(t.shape[:-1] + (m_old,), fill), t], dim=-1)

        self.keys = torch.cat([pad_old(self.keys, 0), pad_new(k, 0)])
        self.values = torch.cat([pad_old(self.values, 0), pad_new(v, 0)])
        self.item_class = torch.cat([pad_old(self.item_class, 0), pad_new(c, 0)])
        self.item_valid = torch.cat([pad_old(self.item_valid, False), pad_new(ok, False)])
        if self.last is not None:  # new slots have no previous frame
            n_old = self.last['keys'].shape[0]
            self.last = {name: torch.cat([t, t.new_zeros((n,) + t.shape[1:])])
                         for name, t in self.last.items()}
            self.last['valid'][n_old:] = False

    def memorize(self, keys: Tensor, values: Tensor, hard: Tensor, soft: Tensor) -> None:
        self._check(keys, values, hard, soft, self.num_slots)
        self.frame_index += 1
        k, v, c, ok = self._items(keys, values, hard)
        if self.frame_index % self.mem_every == 0:
            self.keys = torch.cat([self.keys, k], dim=2)
            self.values = torch.cat([self.values, v], dim=2)
            self.item_class = torch.cat([self.item_class, c], dim=1)
            self.item_valid = torch.cat([self.item_valid, ok], dim=1)
            self.last = None
        elif self.include_last:
            self.last = dict(keys=k, values=v, cls=c, valid=ok)

    def read(self, query: Tensor) -> Tuple[Tensor, Tensor]:
        self._check_query(query)
        n, _, h, w = query.shape
        keys, values, cls, valid = self.keys, self.values, self.item_class, self.item_valid
        if self.last is not None:
            keys = torch.cat([keys, self.last['keys']], dim=2)
            values = torch.cat([values, self.last['values']], dim=2)
            cls = torch.cat([cls, self.last['cls']], dim=1)
            valid = torch.cat([valid, self.last['valid']], dim=1)
        readout, feat = memory_readout(query.flatten(2), keys, values, cls, self.tau, self.top_l,
                                       None if bool(valid.all()) else valid)
        return readout.view(n, -1, h, w), feat.view(n, -1, h, w)

    def state_tensors(self) -> Dict[str, Tensor]:
        if self.keys is None:
            return {}
        out = dict(keys=self.keys, values=self.values, item_class=self.item_class,
                   item_valid=self.item_valid)
        if self.last is not None:
            out.update({f'last.{k}': v for k, v in self.last.items()})
        return out
