# BiCT forward step with the 'regression' objective: psi(phi_old(x)) regressed onto phi_new(x) (MSE), i.e.
# FCT without side information (apple/ml-fct); otherwise as digits_bict_transformation.py.
_base_ = ['./digits_bict_transformation.py']
model = dict(distill_losses=dict(loss_bict=dict(objective='regression', kind='mse')))
