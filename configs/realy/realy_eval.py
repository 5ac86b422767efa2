# REALY region-wise evaluation (arXiv 2203.09729): dataset + metric fragment.
# Inherit it from a face-reconstruction config (its model must return data samples with
# `pred_vertices` in the template topology), or evaluate a folder of meshes directly with
#   python tools/realy_evaluate.py data/REALY <pred_dir> --template-obj ... --template-keypoints ...
# Folder layout and every option: configs/realy/README.md.
custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)

data_root = 'data/REALY/'
pred_root = None  # a folder of <subject>_<view>.obj predictions, or None when a model predicts
img_dir = data_root + 'images/frontal/'  # used when pred_root is None (add an image-loading pipeline)
template_obj = data_root + 'templates/HIFI3D.obj'  # the prediction topology
template_keypoints = data_root + 'templates/HIFI3D.txt'  # its 85 barycentric keypoints (JSON)
regions = ('nose', 'mouth', 'forehead', 'cheek')

test_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(
        type='REALYDataset',
        data_root=data_root,
        pred_root=pred_root,
        img_dir=img_dir,
        keypoint_dir='REALY_HIFI3D_keypoints',
        scan_dir='REALY_scan_region',
        scale_file='metrical_scale.txt',
        regions=regions,
        check_manifold=True,
        strict_mesh_checks=False))  # True: refuse degenerate / non-manifold meshes (default: warn)

test_evaluator = dict(
    type='REALYMetric',
    template_obj=template_obj,
    template_keypoints=template_keypoints,
    regions=regions,
    template_mask=None,  # REALY's --template_mask: one 0/1 per template vertex
    allow_reflection=True,  # REALY's code keeps reflections; False corrects them to det R = +1 (see README)
    merge_scan_vertices=True,  # REALY: the error on the scan region with duplicate vertices merged
    # REALY's settings, written out (these are the defaults)
    icp_cfg=dict(max_iter=100, tol=1e-6),
    nicp_cfg=dict(
        formulation='incremental',  # each step's affines act on the current deformed scan
        stop_rule='realy',  # test before each step, carried across stages
        stiffness=(50.0, 30.326533, 18.393972),  # 50 exp(-0.5 (d - 1)), d = 1, 2, 3
        epsilon=(1.0, 0.5, 0.25),
        max_steps=11,  # per stage, with keypoints
        max_steps_without_landmarks=None,  # the cheek: no cap
        gamma=1.0,
        landmark_weight=50.0,
        landmark_decay=0.9,
        landmark_weight_scale=0.1,
        init_stiffness=150.0,
        init_g=(2.0, 2.0, 3.0, 2.0),
        outlier_factor=2.0,
        outlier_min=1.0),
    error_map_dir=None,  # e.g. 'work_dirs/realy/error_maps'
    error_map_max=5.0)
test_cfg = dict(type='TestLoop')
