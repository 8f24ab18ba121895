# CPU demo: VL-LTR with post-hoc logit adjustment of the image branch
# (Menon et al., ICLR 2021, Eq. 9): the MLP branch is a plain classifier
# trained on the long-tailed data and carries its label prior, the text
# branch scores cosines to fixed class sentences. Training is that of
# lgr_demo_fmnist-lt.py, so an LGR checkpoint can be tested with this
# config directly. run_demo.py picks alpha and tau on the val split instead
# of these defaults (model.head.alpha=... model.head.posthoc_tau=...).
_base_ = ['./lgr_demo_fmnist-lt.py']

model = dict(head=dict(posthoc_tau=1.0, posthoc_target='image'))
