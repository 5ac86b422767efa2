"""Write ``mmkd_plugins/_registry_manifest.py``: which module registers which name in which registry.

``import mmkd_plugins`` registers a lazy placeholder for every entry of the manifest instead of
importing the subpackages (which import torch); see :mod:`mmkd_plugins.utils.lazy_registry`. The
manifest is found by scanning the source (no import) for

- decorators ``@X.register_module(...)`` on classes and functions, and
- calls ``X.register_module(name=..., module=...)`` / ``X.register_module(...)(obj)``,

where ``X`` is a registry imported from ``mmengine.registry`` (``MODELS``, ``HOOKS``, ``METRICS``,
``DATASETS``, ``TRANSFORMS``, ``PARAM_SCHEDULERS``, ...). The registered name is ``name=`` (a string or
a list of strings) or else the class / function name. Anything the scan cannot resolve statically (a
registry from another package, a computed name) is an error: lazy registration could not honour it.

Usage::

    python tools/gen_registry_manifest.py          # rewrite the manifest
    python tools/gen_registry_manifest.py --check  # exit 1 if the committed manifest is stale
"""
import argparse
import ast
import os
import os.path as osp
import sys
from typing import List, Tuple

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..'))
PACKAGE = 'mmkd_plugins'
MANIFEST = osp.join(REPO, PACKAGE, '_registry_manifest.py')
COMMAND = 'python tools/gen_registry_manifest.py'

Entry = Tuple[str, str, str]  # (registry, registered name, defining module)


def _module_name(path: str, root: str) -> str:
    rel = osp.relpath(path, osp.dirname(root))[:-len('.py')].split(os.sep)
    if rel[-1] == '__init__':
        rel = rel[:-1]
    return '.'.join(rel)


def _registry_aliases(tree: ast.Module) -> dict:
    """Local name -> registry name, for every ``from mmengine.registry import X [as Y]``."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == 'mmengine.registry':
            for alias in node.names:
                aliases[alias.asname or alias.name] = alias.name
    return aliases


def _names(value, default: str, where: str) -> List[str]:
    if value is None:
        return [default]
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return [value.value]
    if isinstance(value, (ast.List, ast.Tuple)) and all(
            isinstance(v, ast.Constant) and isinstance(v.value, str) for v in value.elts):
        return [v.value for v in value.elts]
    raise ValueError(f'{where}: register_module(name=...) must be a string or a list of strings '
                     'for the registry manifest')


def _register_call(node, aliases: dict, where: str):
    """``X.register_module(...)`` -> (registry, keywords) or None."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == 'register_module'):
        return None
    owner = node.func.value
    if not isinstance(owner, ast.Name) or owner.id not in aliases:
        raise ValueError(f'{where}: register_module on {ast.unparse(owner)!r}, which is not a registry '
                         'imported from mmengine.registry; lazy registration needs the root registry')
    return aliases[owner.id], {k.arg: k.value for k in node.keywords}


def scan_file(path: str, root: str) -> List[Entry]:
    module = _module_name(path, root)
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    aliases = _registry_aliases(tree)
    entries = []
    for node in ast.walk(tree):
        where = f'{osp.relpath(path, REPO)}:{getattr(node, "lineno", "?")}'
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            for dec in node.decorator_list:
                found = _register_call(dec, aliases, where)
                if found:
                    registry, kw = found
                    entries += [(registry, n, module) for n in _names(kw.get('name'), node.name, where)]
        elif isinstance(node, ast.Call):
            # X.register_module(module=obj, ...)  or  X.register_module(...)(obj)
            found = _register_call(node, aliases, where)
            if found and 'module' in found[1]:
                registry, kw = found
                obj = kw['module']
                default = obj.id if isinstance(obj, ast.Name) else None
                if default is None and kw.get('name') is None:
                    raise ValueError(f'{where}: register_module(module=...) needs name= or a plain name')
                entries += [(registry, n, module) for n in _names(kw.get('name'), default, where)]
            inner = _register_call(node.func, aliases, where) if isinstance(node.func, ast.Call) else None
            if inner and node.args:
                registry, kw = inner
                obj = node.args[0]
                default = obj.id if isinstance(obj, ast.Name) else None
                if default is None and kw.get('name') is None:
                    raise ValueError(f'{where}: register_module()(...) needs name= or a plain name')
                entries += [(registry, n, module) for n in _names(kw.get('name'), default, where)]
    return entries


def scan(root: str = osp.join(REPO, PACKAGE)) -> List[Entry]:
    """Every registration under ``root`` (the package folder), sorted; duplicates are an error."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(('.', '__pycache__')))
        for fn in sorted(filenames):
            if fn.endswith('.py') and fn != osp.basename(MANIFEST):
                entries += scan_file(osp.join(dirpath, fn), root)
    seen = {}
    for registry, name, module in entries:
        if (registry, name) in seen and seen[(registry, name)] != module:
            raise ValueError(f'{registry} name {name!r} is registered by both '
                             f'{seen[(registry, name)]} and {module}')
        seen[(registry, name)] = module
    return sorted(set(entries))


def render(entries: List[Entry]) -> str:
    lines = [
        f'"""Registry manifest: generated by ``{COMMAND}``, do not edit.',
        '',
        '(registry in mmengine.registry, registered name, module whose import registers it); read by',
        ':mod:`mmkd_plugins.utils.lazy_registry` to register lazy placeholders at package import.',
        '"""',
        'MANIFEST = (',
    ]
    lines += [f'    ({r!r}, {n!r}, {m!r}),' for r, n, m in entries]
    lines += [')', '']
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true',
                        help='do not write; exit 1 if the committed manifest differs from a fresh scan')
    args = parser.parse_args(argv)
    text = render(scan())
    current = open(MANIFEST, encoding='utf-8').read() if osp.isfile(MANIFEST) else None
    if args.check:
        if current != text:
            print(f'{osp.relpath(MANIFEST, REPO)} is stale: run `{COMMAND}` and commit it',
                  file=sys.stderr)
            return 1
        return 0
    if current != text:
        with open(MANIFEST, 'w', encoding='utf-8') as f:
            f.write(text)
    print(f'{osp.relpath(MANIFEST, REPO)}: {text.count(chr(10)) - 7} entries')
    return 0


if __name__ == '__main__':
    sys.exit(main())
