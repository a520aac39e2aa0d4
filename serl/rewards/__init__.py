"""Reward classifiers: a binary "success" detector on camera frames, for robots without poses.

On a real robot nobody computes the reward from object poses; a small conv net looks at the
camera frames and says "success" (SERL / HIL-SERL). The workflow, one module per step:

* `dataset`: labelled frame sets (`FrameSet`), read from recordings and episode datasets;
* `record`: record frames while a label source (a key in the terminal, or `info["success"]`
  in simulation) marks success — `serl record-rewards`;
* `model`: the classifier (the observation encoders of `serl.nets` + a small head) and its
  checkpoint (safetensors + JSON with the config and the calibrated threshold);
* `calibrate`: the decision threshold chosen on the validation split for a target precision,
  metrics, and the "k consecutive positive frames" rule;
* `train`: training with augmentation and class balancing, and its report — `serl train-reward`;
* `wrapper`: the env wrapper whose reward and termination are the classifier's decision.
"""
