"""``python -m mmkd_plugins configs-dir``: print the folder of mmkd_plugins' configs.

For downstream configs run by upstream scripts (``mim train mmdet ...``)::

    export MMKD_PLUGINS_CONFIGS=$(python -m mmkd_plugins configs-dir)
"""
import argparse

from mmkd_plugins.utils.config_paths import configs_root


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog='python -m mmkd_plugins')
    parser.add_argument('command', choices=['configs-dir'], help='configs-dir: print the configs folder')
    parser.parse_args(argv)
    print(configs_root())


if __name__ == '__main__':
    main()
