# AdaIN + contrastively refined encoder on scikit-image's bundled sample photos (smoke scale):
# the data and length of adain_vgg19_sample-images.py with the refinement settings of
# adain-contrastive_vgg19_1xb8-160k_coco-wikiart.py (refinement during the first half).
_base_ = './adain_vgg19_sample-images.py'

model = dict(
    style_contrastive_loss=dict(
        type='StyleContrastiveLoss', layers=('relu3_1', ), descriptor='mean_std',
        hidden_dim=512, out_dim=128, tau=0.2, loss_weight=1.0),
    content_contrastive_loss=dict(
        type='ContentContrastiveLoss', layer='relu4_1', pool_size=4, hidden_dim=512,
        out_dim=128, tau=0.2, loss_weight=1.0),
    refine_iters=200,
    loss_network='encoder',
    detach_stylized=True,
    encoder_grad_from_transfer=False)
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'encoder.': dict(lr_mult=0.1)}))
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
