"""Compatible model upgrades: prototype refinement (UniBCT), BiCT transformation, the training wrapper on
the generic distiller, and the embedding-file / extraction helpers used by tools, hooks and metrics."""
from .bict import BiCTTransformation, fit_bict_transformation, load_transformation, save_transformation
from .embed import embed_batch, extract_embeddings
from .embedding_io import load_embeddings, save_embeddings
from .prototypes import ClassMeanBank, refine_class_samples, structural_prototypes
from .wrapper import BiCTTransformStudent, CompatibleDistiller

__all__ = [
    'BiCTTransformation', 'fit_bict_transformation', 'load_transformation', 'save_transformation',
    'embed_batch', 'extract_embeddings', 'load_embeddings', 'save_embeddings', 'ClassMeanBank',
    'refine_class_samples', 'structural_prototypes', 'BiCTTransformStudent', 'CompatibleDistiller'
]
