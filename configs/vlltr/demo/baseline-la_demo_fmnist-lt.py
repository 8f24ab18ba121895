# CPU demo: the vision-only baseline with post-hoc logit adjustment (Menon
# et al., ICLR 2021, Eq. 9): predictions softmax(logits - tau * log(pi)),
# pi the training-set class prior that ClassPriorHook stores in the head.
# Training is that of baseline_demo_fmnist-lt.py; only prediction changes,
# so a baseline checkpoint can be tested with this config directly.
# tau = 1 is the Bayes-optimal value for balanced error; run_demo.py picks
# tau on the val split instead (model.head.posthoc_tau=...).
_base_ = ['./baseline_demo_fmnist-lt.py']

model = dict(head=dict(posthoc_tau=1.0))
