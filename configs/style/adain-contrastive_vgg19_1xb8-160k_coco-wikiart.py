# AdaIN with a contrastively refined encoder ("Improving the Latent Space of Image Style
# Transfer", arXiv 2205.12135). Two phases in one run, counted by the model:
#   iterations [0, refine_iters): the encoder (own parameter group, lr x 0.1) and the projection
#       heads learn the style + content contrastive losses; the decoder learns AdaIN's loss;
#   iterations [refine_iters, max_iters): the refined encoder is frozen and the decoder is
#       trained further with AdaIN's loss only.
# Metrics are reported in both the plain (initial) and the refined encoder's space.
# To fine-tune an already trained AdaIN decoder instead, set load_from to a baseline checkpoint.
_base_ = './adain_vgg19_1xb8-160k_coco-wikiart.py'

model = dict(
    style_contrastive_loss=dict(
        type='StyleContrastiveLoss',
        layers=('relu3_1', ),
        descriptor='mean_std',
        hidden_dim=512,
        out_dim=128,
        tau=0.2,
        loss_weight=1.0),
    content_contrastive_loss=dict(
        type='ContentContrastiveLoss',
        layer='relu4_1',
        pool_size=4,
        hidden_dim=512,
        out_dim=128,
        tau=0.2,
        loss_weight=1.0),
    refine_iters=40000,
    loss_network='encoder',
    detach_stylized=True,
    encoder_grad_from_transfer=False)

# the encoder (not the frozen plain copy, whose params get no gradient) in its own group
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'encoder.': dict(lr_mult=0.1)}))
# with DDP the encoder and heads get no gradient in the second phase
model_wrapper_cfg = dict(type='MMDistributedDataParallel', find_unused_parameters=True)
