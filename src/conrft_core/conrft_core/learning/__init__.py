"""Learning: the ConRFT / CO-RFT method and its baselines.

Networks (`nets`, `consistency`, `critic`, `backbone`), agents (`agent`: Cal-ConRFT / HIL-ConRFT; `sac`:
HIL-SERL), the built-in VLA and its pretraining (`vla`), full fine-tuning (`finetune`), the methods and the run
config (`methods`), the policy (`policy`), rollouts against a gymnasium env (`rollout`), the run state (`run`),
the stages read top to bottom (`stages`), checkpoints and resume (`resume`), run logs (`runlog`).
May import `conrft_core.data`, never `conrft_core.robot`.
"""
