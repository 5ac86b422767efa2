"""Facts the NKD, ViTKD and HyP2 READMEs / configs must state (checked against the official code):
paper titles, the teacher-mode deviation, the backbone behind each paper number, lr attributions."""
import glob
import os.path as osp
import re

import pytest

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


def _read(*parts):
    with open(osp.join(REPO, *parts), encoding='utf-8') as f:
        return f.read()


def _table_rows(text, first_cell):
    """Cells of the markdown table rows whose first cell starts with ``first_cell``."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if line.startswith('|') and cells[0].startswith(first_cell):
            rows.append(cells)
    return rows


def test_nkd_paper_title():
    text = _read('configs', 'nkd', 'README.md')
    assert '*Rethinking Knowledge Distillation via Cross-Entropy* (arXiv 2208.10139)' in text
    # the ICCV 2023 title belongs to arXiv 2303.13005, never to 2208.10139
    for m in re.finditer(r'From Knowledge Distillation to Self-Knowledge Distillation', text):
        nearby = text[m.start():m.start() + 200]
        assert '2208.10139' not in nearby and '2303.13005' in nearby


@pytest.mark.parametrize('method', ['nkd', 'vitkd'])
def test_teacher_mode_deviation_documented(method):
    text = _read('configs', method, 'README.md')
    rows = _table_rows(text, 'teacher mode')
    assert len(rows) == 1, f'{method}: no "teacher mode" row in the deviation table'
    official, here = rows[0][1], rows[0][2]
    assert '**train**' in official and '**eval**' in here


def test_nkd_readme_documents_batch_mean_option():
    text = _read('configs', 'nkd', 'README.md')
    rows = _table_rows(text, 'tf-NKD batch mean')
    assert rows and "batch_mean='labelled'" in rows[0][3] and 'all N samples' in rows[0][1]


def test_hyp2_model_zoo_names_the_papers_backbone():
    text = _read('configs', 'hyp2', 'README.md')
    zoo = text[text.index('## Model zoo'):]
    header = _table_rows(zoo, 'dataset (mAP@K)')[0]
    col = header.index("paper's backbone (input)")
    expected = {'Flickr-25k': 'AlexNet (224 px)', 'NUS-WIDE-21': 'AlexNet (224 px)',
                'VOC2007': 'GoogLeNet (448 px)', 'VOC2012': 'GoogLeNet (448 px)'}
    for dataset, backbone in expected.items():
        row = _table_rows(zoo, dataset)[0]
        assert row[col] == backbone, (dataset, row)


def test_hyp2_resnet50_lr_not_attributed_to_the_official_code():
    configs = sorted(glob.glob(osp.join(REPO, 'configs', 'hyp2', 'hyp2_resnet50_*.py')))
    assert len(configs) == 20
    # the ResNet-50 configs inherit their lr (and the note on where it comes from) from one base
    base = osp.join(REPO, 'configs', 'hyp2', '_base_', 'hyp2_resnet50_1xb100-100e.py')
    for path in configs:
        text = open(path).read()
        assert 'as the official code' not in text, path
        assert "'./_base_/hyp2_resnet50_1xb100-100e.py'" in text and 'lr=' not in text, path
    text = open(base).read()
    assert 'as the official code' not in text
    assert 'GoogLeNet' in text and 'NameError' in text and 'lr=0.02' in text
    readme = _read('configs', 'hyp2', 'README.md')
    assert 'ResNet-50: both 0.02, as in the official code' not in readme
    assert 'ResNet-50: both 0.02, our choice' in readme
