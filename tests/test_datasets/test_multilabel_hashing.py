import os.path as osp

import numpy as np
import pytest

from mmkd_plugins.datasets.multilabel_hashing import (MultiLabelHashingDataset, NUSWIDEHashing,
                                                      VOC2007Hashing, VOC2012Hashing,
                                                      parse_hashing_list, voc_hashing_list,
                                                      write_hashing_list)


def _write(path, rows):
    with open(path, 'w') as f:
        f.write('\n'.join(rows) + '\n')


@pytest.fixture
def lists(tmp_path):
    _write(tmp_path / 'train.txt', ['a.jpg 1 0 1', 'b.jpg 0 1 0', '', 'c.jpg 0 0 0'])
    _write(tmp_path / 'test.txt', ['q1.jpg 1 1 0', 'q2.jpg 0 0 1'])
    _write(tmp_path / 'database.txt', ['d1.jpg 1 0 0', 'd2.jpg 0 1 1', 'd3.jpg 1 1 1'])
    return tmp_path


def test_train_split_fields(lists):
    ds = MultiLabelHashingDataset(split='train', data_root=str(lists), data_prefix='images')
    assert len(ds) == 3 and ds.num_classes == 3
    assert ds.metainfo['classes'] == ('class_0', 'class_1', 'class_2')
    info = ds[0]  # no pipeline: the data info
    assert info['img_path'] == osp.join(str(lists), 'images', 'a.jpg')
    assert info['gt_label'].tolist() == [0, 2]
    np.testing.assert_array_equal(info['gt_score'], [1, 0, 1])
    assert info['split'] == 'train'
    assert ds[2]['gt_label'].tolist() == []  # all-zero labels are allowed
    assert ds.get_cat_ids(1) == [1]
    np.testing.assert_array_equal(ds.get_multi_hot(), [[1, 0, 1], [0, 1, 0], [0, 0, 0]])


def test_query_and_database_in_one_dataset(lists):
    ds = MultiLabelHashingDataset(split=['query', 'database'], data_root=str(lists),
                                  classes=['x', 'y', 'z'])
    assert ds.get_splits() == ['query'] * 2 + ['database'] * 3
    assert ds.metainfo['classes'] == ('x', 'y', 'z')
    assert osp.basename(ds[2]['img_path']) == 'd1.jpg'
    custom = MultiLabelHashingDataset(split=['database'], ann_file=dict(database='train.txt'),
                                      data_root=str(lists))
    assert custom.get_splits() == ['database'] * 3
    absolute = MultiLabelHashingDataset(split='query', ann_file=str(lists / 'test.txt'))
    assert len(absolute) == 2


def test_errors(lists):
    with pytest.raises(FileNotFoundError, match='database.txt'):
        MultiLabelHashingDataset(split='database', data_root=str(lists / 'nowhere'))
    with pytest.raises(ValueError, match='split must be'):
        MultiLabelHashingDataset(split='val', data_root=str(lists))
    with pytest.raises(ValueError, match='one ann_file for splits'):
        MultiLabelHashingDataset(split=['query', 'database'], ann_file='test.txt', data_root=str(lists))
    with pytest.raises(ValueError, match=r"no entry for split\(s\) \['database'\]"):
        MultiLabelHashingDataset(split=['query', 'database'], ann_file=dict(query='test.txt'),
                                 data_root=str(lists))
    _write(lists / 'bad.txt', ['a.jpg 1 0 1', 'b.jpg 0 2 0'])
    with pytest.raises(ValueError, match=r'bad.txt:2: labels must be 0 or 1'):
        parse_hashing_list(str(lists / 'bad.txt'))
    _write(lists / 'bad.txt', ['a.jpg 1 0 1', 'b.jpg 0 1'])
    with pytest.raises(ValueError, match=r'bad.txt:2: expected 3 labels, got 2'):
        MultiLabelHashingDataset(split='train', ann_file='bad.txt', data_root=str(lists))
    _write(lists / 'bad.txt', ['a.jpg'])
    with pytest.raises(ValueError, match='found no labels'):
        parse_hashing_list(str(lists / 'bad.txt'))
    with pytest.raises(ValueError, match='expected 21 labels, got 3'):
        NUSWIDEHashing(split='train', data_root=str(lists))
    with pytest.raises(ValueError, match='expected 20 labels, got 3'):
        VOC2007Hashing(split='query', data_root=str(lists))


def test_write_and_voc_conversion(tmp_path):
    write_hashing_list(str(tmp_path / 'l.txt'), ['p/1.jpg', 'p/2.jpg'], np.array([[1, 0], [0, 0]]))
    entries = parse_hashing_list(str(tmp_path / 'l.txt'))
    assert [e[0] for e in entries] == ['p/1.jpg', 'p/2.jpg']
    np.testing.assert_array_equal(np.stack([e[1] for e in entries]), [[1, 0], [0, 0]])
    with pytest.raises(ValueError, match='spaces'):
        write_hashing_list(str(tmp_path / 'l.txt'), ['a b.jpg'], np.array([[1]]))

    voc = tmp_path / 'VOC2012'
    (voc / 'ImageSets' / 'Main').mkdir(parents=True)
    (voc / 'Annotations').mkdir()
    _write(voc / 'ImageSets' / 'Main' / 'train.txt', ['im1', 'im2'])
    for name, objs in (('im1', ['dog', 'person', 'dog']), ('im2', ['tvmonitor'])):
        body = ''.join(f'<object><name>{o}</name><difficult>0</difficult></object>' for o in objs)
        _write(voc / 'Annotations' / f'{name}.xml', [f'<annotation>{body}</annotation>'])
    assert voc_hashing_list(str(voc), 'train', str(voc / 'train.txt')) == 2
    ds = VOC2012Hashing(split=['train'], data_root=str(voc))
    assert ds[0]['gt_label'].tolist() == [11, 14] and ds[1]['gt_label'].tolist() == [19]
    assert ds[0]['img_path'].endswith(osp.join('JPEGImages', 'im1.jpg'))
    db = VOC2012Hashing(split='database', data_root=str(voc))  # database = train list for VOC2012
    assert len(db) == 2 and db.get_splits() == ['database'] * 2
    with pytest.raises(FileNotFoundError, match='val.txt'):
        voc_hashing_list(str(voc), 'val', str(voc / 'val.txt'))
    _write(voc / 'Annotations' / 'im2.xml', ['<annotation><object><name>cart</name></object>'
                                             '</annotation>'])
    with pytest.raises(ValueError, match="unknown VOC class 'cart'"):
        voc_hashing_list(str(voc), 'train', str(voc / 'train.txt'))


def test_pipeline_with_mmpretrain(lists):
    pytest.importorskip('mmpretrain')
    from PIL import Image
    import mmpretrain  # noqa: F401  (registers transforms)
    (lists / 'img').mkdir()
    for name in ('q1', 'q2', 'd1', 'd2', 'd3'):
        Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(lists / 'img' / f'{name}.jpg')
    ds = MultiLabelHashingDataset(
        split=['query', 'database'], data_root=str(lists), data_prefix='img',
        pipeline=[dict(type='mmpretrain.LoadImageFromFile'),
                  dict(type='mmpretrain.PackInputs', meta_keys=('img_path', 'split'))])
    out = ds[1]
    sample = out['data_samples']
    assert tuple(out['inputs'].shape) == (3, 8, 8)
    assert sample.split == 'query'
    assert sample.gt_label.tolist() == [2]
    assert sample.gt_score.tolist() == [0, 0, 1]
