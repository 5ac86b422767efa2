"""Student initialisation check: per top-level module, how many tensors the initialisation
(``init_cfg`` / ``Pretrained``, ``load_from``, ``init_student``) changed from the random weights of
construction, how many were loaded from a file, and FAIL where a module names pretrained weights but
none loaded."""
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn

from .build import LoadRecorder, unwrap
from .report import FAIL, OK, WARN, Row, row

CHECK = 'student init'


def pretrained_source(node: Any) -> Optional[str]:
    """The checkpoint a (sub-)config names through ``init_cfg=dict(type='Pretrained', ...)`` or
    ``pretrained=...``, searched recursively; None when it names none."""
    if isinstance(node, dict):
        init = node.get('init_cfg')
        inits = init if isinstance(init, (list, tuple)) else [init]
        for i in inits:
            if isinstance(i, dict) and i.get('type') == 'Pretrained':
                return str(i.get('checkpoint'))
        if isinstance(node.get('pretrained'), str):
            return node['pretrained']
        for key, value in node.items():
            if key in ('init_cfg', 'data_preprocessor'):
                continue
            found = pretrained_source(value)
            if found:
                return found
    elif isinstance(node, (list, tuple)):
        for value in node:
            found = pretrained_source(value)
            if found:
                return found
    return None


def _own_pretrained(node: Any) -> Optional[str]:
    """Like :func:`pretrained_source` but only the node's own ``init_cfg`` / ``pretrained``."""
    if not isinstance(node, dict):
        return None
    return pretrained_source({k: v for k, v in node.items() if k in ('init_cfg', 'pretrained')})


def init_and_check(runner, cfg) -> List[Row]:
    """Initialise the run's model as ``Runner.train`` does (``init_weights`` then ``load_from``)
    and report per top-level student module."""
    model = unwrap(runner.model)
    is_distiller = hasattr(model, 'student') and isinstance(model.student, nn.Module)
    student = model.student if is_distiller else model
    model_cfg = cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else dict(cfg.model)
    student_cfg = (model_cfg.get('student') or {}) if is_distiller else model_cfg
    if not isinstance(student_cfg, dict):
        student_cfg = {}
    before = {k: v.detach().clone() for k, v in student.state_dict().items()}
    recorder = LoadRecorder()
    with recorder.record():
        runner._init_model_weights()
        runner.load_or_resume()
    after = student.state_dict()
    loaded = recorder.loaded_names(student)
    whole = _own_pretrained(student_cfg)
    load_from = cfg.get('load_from')
    copied: Dict[str, str] = dict(getattr(model, 'init_student', None) or {}) if is_distiller else {}

    rows = []
    for child, _ in student.named_children():
        keys = [k for k in before if k == child or k.startswith(child + '.')]
        if not keys:
            continue
        changed = sum(not torch.equal(before[k], after[k]) for k in keys)
        n_loaded = sum(k in loaded for k in keys)
        from_teacher = [s for s in copied if s == child or s.startswith(child + '.')]
        source = pretrained_source(student_cfg.get(child)) or whole or load_from
        detail = f'{changed}/{len(keys)} tensors changed by init, {n_loaded} loaded from files'
        data = dict(tensors=len(keys), changed=changed, loaded=n_loaded)
        if from_teacher:
            detail += f'; {", ".join(from_teacher)} copied from the teacher (init_student)'
            status = OK if changed else FAIL
            if not changed:
                detail += ', but nothing changed'
        elif source is not None:
            detail += f'; names pretrained weights {source}'
            if n_loaded == 0:
                status = FAIL
                detail += ': NONE of its tensors loaded (wrong file, or keys with another prefix)'
            elif n_loaded < len(keys):
                status = WARN
                missing = [k for k in keys if k not in loaded][:4]
                detail += f': {len(keys) - n_loaded} tensors not in the file, e.g. {missing}'
            else:
                status = OK
        else:
            status = OK
            detail += ' (random init: no pretrained weights named)'
        rows.append(row(CHECK, child, status, detail, source=source, **data))
    if not rows:
        rows.append(row(CHECK, '-', OK, 'the student has no sub-modules with tensors'))
    return rows
