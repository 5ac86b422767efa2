"""REALY (arXiv 2203.09729): region-wise evaluation of 3D face reconstruction.

Pure geometry functions (numpy in, numpy out); scipy and trimesh are imported where used.
"""
from .alignment import apply_similarity, fit_similarity, global_align
from .icp import region_rigid_icp
from .io import (REALYMeshWarning, load_keypoints, load_mesh, load_metric_scales, load_template_mask,
                 masked_faces, merge_vertices, read_obj, save_error_map, validate_mesh)
from .keypoints import (GLOBAL_KEYPOINTS, ICP_KEYPOINTS, NICP_KEYPOINTS, NUM_KEYPOINTS, REGIONS,
                        barycentric_from_points, barycentric_keypoints, load_barycentric,
                        save_barycentric)
from .nicp import edge_vertex_incidence, optimal_step_nicp
from .pipeline import REALYTemplate, evaluate_prediction, summarize
from .proximity import MovedProximity, SurfaceProximity, closest_points_on_surface
from .region_error import bidirectional_region_error, error_colors

__all__ = [
    'apply_similarity', 'fit_similarity', 'global_align', 'region_rigid_icp', 'load_keypoints',
    'load_mesh', 'load_metric_scales', 'read_obj', 'save_error_map', 'validate_mesh', 'GLOBAL_KEYPOINTS',
    'REALYMeshWarning', 'load_template_mask', 'masked_faces', 'merge_vertices',
    'ICP_KEYPOINTS', 'NICP_KEYPOINTS', 'NUM_KEYPOINTS', 'REGIONS', 'barycentric_from_points',
    'barycentric_keypoints', 'load_barycentric', 'save_barycentric', 'edge_vertex_incidence',
    'optimal_step_nicp', 'REALYTemplate', 'evaluate_prediction', 'summarize', 'MovedProximity',
    'SurfaceProximity', 'closest_points_on_surface', 'bidirectional_region_error', 'error_colors'
]
