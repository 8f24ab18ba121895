# CPU demo, Table 4 #2: AnSS + LGR directly on the initial model, without
# stage 1. The "stage-1 checkpoint" is the initial demo CLIP saved in the
# CVLP layout by tools/model_converters/cvlp_init_checkpoint.py; run_demo.py
# passes it as load_from.
_base_ = ['./lgr_demo_fmnist-lt.py']

load_from = 'work_dirs/demo/cvlp-init.pth'
