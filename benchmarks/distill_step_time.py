"""Training-step time of the distiller vs. the same step written by hand in plain PyTorch.

For each distillation config (the real ImageNet configs at a reduced input size, random weights,
``allow_random_teacher``) this times one training step (forward + backward + SGD step) three ways,
on the same modules and the same batch:

- ``student``: the plain student (its own task loss only), for context;
- ``hand-written``: the distillation step written directly in PyTorch, no distiller: the teacher
  forward under ``no_grad`` to the same layer, the student forward exposing the same features, the
  same connector / loss modules called on them, the student's task loss, backward, SGD step;
- ``distill``: ``SingleTeacherDistiller`` in ``mode='loss'`` (taps, source resolution, loss
  dispatch), backward, SGD step.

``distill / hand-written`` is the framework's own overhead (target <= 1.03). Before timing, both
ways are checked to compute the same losses (same weights, same batch, same RNG state).

Timing: the variants are interleaved step by step, each step is timed alone (with a device
synchronisation on GPU), and the minimum over ``--repeats`` steps is reported (min-of-N is the least
noisy estimate on a shared machine), with the median for reference.

    python benchmarks/distill_step_time.py [--device cpu|cuda] [--batch 8] [--size 112]
        [--repeats 20] [--threads 1] [--out benchmarks/results/distill_step_time.md]
"""
import argparse
import copy
import os.path as osp
import statistics
import sys
import time

import torch

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, REPO)

import mmkd_plugins  # noqa: E402,F401
from mmengine.config import Config  # noqa: E402
from mmengine.registry import MODELS  # noqa: E402

from mmkd_plugins.utils.machine import cpu_model  # noqa: E402

CONFIGS = {
    'MGD (R34 -> R18)': ('configs/mgd/cls/mgd_resnet34_resnet18_8xb32_in1k.py', 'mgd'),
    'NKD (R34 -> R18)': ('configs/nkd/nkd_resnet34_resnet18_8xb32_in1k.py', 'nkd'),
    'ViTKD (DeiT III-S -> DeiT-Ti)': ('configs/vitkd/vitkd_deit3-small_deit-tiny_4xb256_in1k.py',
                                      'vitkd'),
}

# the demo's tiny models (a few ms a step): the difference distiller - hand-written is the
# framework's fixed per-step cost in absolute terms, far above the timer noise
TINY_CONFIGS = {
    'MGD (digits ResNet-18 w16 -> w4)': ('configs/demo/digits_mgd.py', 'mgd'),
    'NKD (digits ResNet-18 w16 -> w4)': ('configs/demo/digits_nkd.py', 'nkd'),
    'ViTKD (digits ViT 64-d -> 16-d)': ('configs/demo/digits_vitkd.py', 'vitkd'),
}


def build(config_path, device='cpu'):
    import logging

    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().setLevel(logging.ERROR)  # no init_weights report
    cfg = Config.fromfile(osp.join(REPO, config_path))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.teacher_ckpt = None
    model_cfg.allow_random_teacher = True
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    if '_scope_' not in model_cfg and cfg.get('default_scope'):
        model_cfg['_scope_'] = cfg.default_scope
    distiller = MODELS.build(model_cfg)
    distiller.init_weights()
    return distiller.to(device)


# ---------------------------------------------------------------- the hand-written steps
def _task_loss(student, logits, labels):
    """The student's own classification loss on its logits (what its head computes)."""
    return student.head.loss_module(logits, labels, avg_factor=logits.size(0))


def vit_forward(backbone, x, low_layers=2):
    """mmpretrain VisionTransformer / DeiT3 forward, written out so that the intermediate tokens are
    plain return values: ``(low features of blocks 0..low_layers-1, tokens after ln1, output)``.
    DeiT3 adds the position embedding before the cls token, ViT / DeiT after."""
    from mmpretrain.models.backbones import DeiT3
    from mmpretrain.models.utils import resize_pos_embed
    b = x.shape[0]
    x, patch_resolution = backbone.patch_embed(x)
    deit3 = isinstance(backbone, DeiT3)

    def add_pos(x, extra):
        return x + resize_pos_embed(backbone.pos_embed, backbone.patch_resolution, patch_resolution,
                                    mode=backbone.interpolate_mode, num_extra_tokens=extra)
    if deit3:
        x = backbone.drop_after_pos(add_pos(x, 0))
    if backbone.cls_token is not None:
        x = torch.cat((backbone.cls_token.expand(b, -1, -1), x), dim=1)
    if not deit3:
        x = backbone.pre_norm(backbone.drop_after_pos(add_pos(x, backbone.num_extra_tokens)))
    lows = []
    for i, layer in enumerate(backbone.layers):
        x = layer(x)
        if i < low_layers:
            lows.append(x)
        if i == len(backbone.layers) - 1 and backbone.final_norm:
            x = backbone.ln1(x)
    return lows, x, backbone._format_output(x, patch_resolution)


def hand_losses(kind, distiller, inputs, labels):
    """The distillation losses of one step, computed by direct calls (no taps, no distiller)."""
    student, teacher = distiller.student, distiller.teacher
    if kind == 'mgd':
        with torch.no_grad():
            t_feat = teacher.backbone(inputs)[-1]
        s_feats = student.backbone(inputs)
        logits = student.head(student.neck(s_feats))
        distill = distiller.distill_losses['loss_mgd'](distiller.connectors['mgd'](s_feats[-1]), t_feat)
        return [_task_loss(student, logits, labels), distill]
    if kind == 'nkd':
        with torch.no_grad():
            t_logits = teacher.head(teacher.neck(teacher.backbone(inputs)))
        logits = student.head(student.neck(student.backbone(inputs)))
        distill = distiller.distill_losses['loss_nkd'](logits, t_logits, labels)
        return [_task_loss(student, logits, labels), distill]
    if kind == 'vitkd':
        with torch.no_grad():
            t_low, t_high, _ = vit_forward(teacher.backbone, inputs)
        s_low, s_high, out = vit_forward(student.backbone, inputs)
        logits = student.head((out, ))
        d = distiller.distill_losses['loss_vitkd'](s_high, t_high, student_low=s_low,
                                                   teacher_low=t_low)
        return [_task_loss(student, logits, labels), d['loss_vitkd_low'], d['loss_vitkd_gen']]
    raise ValueError(kind)


def check_same_losses(kind, distiller, inputs, samples, labels):
    """Both ways give the same loss values (same RNG state for the random masks)."""
    torch.manual_seed(123)
    framework = distiller(inputs, samples, mode='loss')
    torch.manual_seed(123)
    hand = hand_losses(kind, distiller, inputs, labels)
    a = sum(v for k, v in framework.items() if 'loss' in k)
    b = sum(hand)
    if not torch.allclose(a, b, rtol=1e-4, atol=1e-6):
        raise AssertionError(f'{kind}: distiller loss {a.item()} != hand-written loss {b.item()}')
    return a.item()


def measure(kind, distiller, batch, size, repeats, device='cpu', warmup=3, clock=time.perf_counter):
    from mmpretrain.structures import DataSample
    torch.manual_seed(0)
    num_classes = distiller.student.head.num_classes
    inputs = torch.randn(batch, 3, size, size, device=device)
    labels = torch.arange(batch, device=device) % num_classes
    samples = [DataSample().set_gt_label(int(i)).to(device) for i in labels]
    distiller.train()
    student = distiller.student
    params = [p for p in distiller.parameters() if p.requires_grad]
    opt_student = torch.optim.SGD(student.parameters(), lr=1e-4)
    opt_all = torch.optim.SGD(params, lr=1e-4)
    loss_value = check_same_losses(kind, distiller, inputs, samples, labels)

    def student_step():
        losses = student(inputs, samples, mode='loss')
        opt_student.zero_grad()
        sum(v for k, v in losses.items() if 'loss' in k).backward()
        opt_student.step()

    def hand_step():
        loss = sum(hand_losses(kind, distiller, inputs, labels))
        opt_all.zero_grad()
        loss.backward()
        opt_all.step()

    def distill_step():
        losses = distiller(inputs, samples, mode='loss')
        opt_all.zero_grad()
        sum(v for k, v in losses.items() if 'loss' in k).backward()
        opt_all.step()

    sync = torch.cuda.synchronize if str(device).startswith('cuda') else (lambda: None)
    steps = dict(student=student_step, hand=hand_step, distill=distill_step)
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in steps}
    order = list(steps.items())
    for r in range(repeats):  # interleaved, in a rotating order: bursts of load hit all variants alike
        for name, fn in order[r % 3:] + order[:r % 3]:
            sync()
            t0 = clock()
            fn()
            sync()
            times[name].append(clock() - t0)
    return dict(min={k: min(v) for k, v in times.items()},
                median={k: statistics.median(v) for k, v in times.items()}, loss=loss_value)


def machine(device):
    if str(device).startswith('cuda'):
        return f'GPU {torch.cuda.get_device_name(0)}'
    return f'CPU {cpu_model()}'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=112)
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--clock', choices=['cpu', 'wall'],
                        help='cpu: the process\'s CPU time (user+sys; default on CPU: a shared '
                             'machine\'s other jobs do not count); wall: elapsed time (default on GPU)')
    parser.add_argument('--tiny-repeats', type=int, default=200,
                        help='repeats of the tiny demo models (batch 2 at 16x16); 0 skips them')
    parser.add_argument('--methods', nargs='+', choices=[v[1] for v in CONFIGS.values()])
    parser.add_argument('--note', default='', help='appended to the header (e.g. machine load)')
    parser.add_argument('--out', default=osp.join(REPO, 'benchmarks/results/distill_step_time.md'))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock_name = args.clock or ('wall' if str(args.device).startswith('cuda') else 'cpu')
    clock = time.process_time if clock_name == 'cpu' else time.perf_counter

    rows, ratios = [], {}
    for name, (path, kind) in CONFIGS.items():
        if args.methods and kind not in args.methods:
            continue
        t = measure(kind, build(path, args.device), args.batch, args.size, args.repeats, args.device,
                    clock=clock)
        m, med = t['min'], t['median']
        ratios[kind] = m['distill'] / m['hand']
        rows.append(f"| {name} | {m['student'] * 1e3:.1f} | {m['hand'] * 1e3:.1f} | "
                    f"{m['distill'] * 1e3:.1f} | **{m['distill'] / m['hand']:.3f}** | "
                    f"{med['distill'] / med['hand']:.3f} | {m['distill'] / m['student']:.2f} |")
        print(rows[-1], flush=True)
    tiny_rows = []
    for name, (path, kind) in ({} if args.tiny_repeats == 0 else TINY_CONFIGS).items():
        if args.methods and kind not in args.methods:
            continue
        t = measure(kind, build(path, args.device), 2, 16, args.tiny_repeats, args.device,
                    clock=clock)['min']
        tiny_rows.append(f"| {name} | {t['hand'] * 1e3:.2f} | {t['distill'] * 1e3:.2f} | "
                         f"{(t['distill'] - t['hand']) * 1e3:.2f} | {t['distill'] / t['hand']:.3f} |")
        print(tiny_rows[-1], flush=True)
    load = ''
    if hasattr(__import__('os'), 'getloadavg'):
        load = f' Load average at the end: {__import__("os").getloadavg()[0]:.1f}.'
    text = [
        '# Distillation step time: distiller vs. the same step written by hand',
        '',
        f'{machine(args.device)}, {args.threads} thread(s), batch {args.batch}, input '
        f'{args.size}x{args.size}, random weights, SGD step included, '
        f'{"CPU time (user+sys) of the process" if clock_name == "cpu" else "wall time"} per step. '
        f'Each variant timed step by step, interleaved in a rotating order, {args.repeats} repeats '
        f'after 3 warm-up steps; min-of-{args.repeats} '
        f'reported (median ratio for reference).{load} {args.note}'.rstrip(),
        f'Produced by `python benchmarks/distill_step_time.py --device {args.device} --threads '
        f'{args.threads} --repeats {args.repeats} --clock {clock_name}`.',
        '',
        '| method | student step (ms) | hand-written distill step (ms) | distiller step (ms) | '
        'distiller / hand-written (min) | same, median | distiller / student |',
        '|---|---|---|---|---|---|---|',
        *rows, '',
        'The hand-written step does the same computation with direct calls: teacher forward under '
        '`no_grad` to the same layer (MGD: backbone; NKD: logits; ViTKD: the final norm), the '
        'student forward, the same connector and loss modules, the student\'s cross-entropy, '
        'backward and SGD step. Both ways are checked to give the same loss before timing. '
        '`distiller / hand-written` is the framework overhead (target <= 1.03).', ''
    ]
    if tiny_rows:
        text += [
            f'The framework\'s fixed cost per step in absolute terms: the demo\'s tiny models '
            f'(`configs/demo`, random weights), batch 2 at 16x16, min-of-{args.tiny_repeats}, '
            'same clock and protocol:', '',
            '| method | hand-written step (ms) | distiller step (ms) | difference (ms) | ratio |',
            '|---|---|---|---|---|', *tiny_rows, '']
    with open(args.out, 'w') as f:
        f.write('\n'.join(text))
    print(f'wrote {args.out}')
    return ratios


if __name__ == '__main__':
    main()
