"""Packaging for mmkd_plugins.

Configs and tools are also exposed the way OpenMMLab packages do it (``mmkd_plugins/.mim``), so that
``mim`` finds them once the package is installed.
"""
import os
import os.path as osp
import shutil

from setuptools import Extension, find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_requirements(name):
    """Requirement lines of ``requirements/<name>.txt`` without comments."""
    with open(osp.join(HERE, 'requirements', name + '.txt')) as f:
        lines = [ln.split('#')[0].strip() for ln in f]
    return [ln for ln in lines if ln]


def get_version():
    scope = {}
    with open(osp.join(HERE, 'mmkd_plugins', 'version.py')) as f:
        exec(compile(f.read(), 'version.py', 'exec'), scope)
    return scope['__version__']


def add_mim_extension():
    """Expose configs/ and tools/ under mmkd_plugins/.mim (symlinks for editable installs)."""
    mim_root = osp.join(HERE, 'mmkd_plugins', '.mim')
    os.makedirs(mim_root, exist_ok=True)
    for name in ('configs', 'tools'):
        src, dst = osp.join(HERE, name), osp.join(mim_root, name)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        try:
            os.symlink(osp.relpath(src, mim_root), dst, target_is_directory=True)
        except OSError:
            shutil.copytree(src, dst)


def native_extensions():
    """Optional C kernels (plain C, no torch headers; a few seconds to build). ``optional=True``: a
    machine without a C compiler still installs, and the Python code falls back to its torch path."""
    return [Extension('mmkd_plugins.evaluation.metrics._hamming_native',
                      sources=['mmkd_plugins/evaluation/metrics/csrc/hamming_native.c'],
                      extra_compile_args=['-O3'] if os.name != 'nt' else [],
                      optional=True)]


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmkd_plugins',
        version=get_version(),
        description='OpenMMLab 2.x plugins: distillation (MGD, ViTKD, NKD), SWEM, HyP2, '
        'compatible upgrades, style transfer, REALY',
        long_description=open(osp.join(HERE, 'README.md')).read()
        if osp.exists(osp.join(HERE, 'README.md')) else '',
        long_description_content_type='text/markdown',
        packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools', 'benchmarks')),
        include_package_data=True,
        package_data={'mmkd_plugins': ['.mim/configs/**/*', '.mim/tools/**/*',
                                       'models/losses/data/*.txt']},
        python_requires='>=3.8',
        install_requires=read_requirements('runtime'),
        extras_require={
            'mim': read_requirements('mminstall'),
            'tests': read_requirements('tests'),
            'optional': read_requirements('optional'),
            'all': read_requirements('mminstall') + read_requirements('optional')
            + read_requirements('tests'),
        },
        entry_points={'console_scripts': ['mmkd-train=mmkd_plugins.cli:train',
                                          'mmkd-test=mmkd_plugins.cli:test',
                                          'mmkd-wire=mmkd_plugins.wiring.cli:main',
                                          'mmkd-doctor=mmkd_plugins.cli:doctor']},
        ext_modules=native_extensions(),
        license='Apache License 2.0',
        zip_safe=False,
    )
