"""Training LionFS models: ``lionfs train --config CONFIG --out DIR`` (ROS-free, never imports rclpy).

- ``config``: typed training config from YAML (``extends``, ``--set`` overrides, clear errors).
- ``build``: the run's examples (synthetic world or VideoLLM-online narration streams), tokenizer, model.
- ``dataset``: examples -> tokenized samples with uint8 frames; the batch collator.
- ``trainer``: the HF Trainer taught LionFS inputs, loss parts, model-directory checkpoints, resume.
- ``frame_pretraining``: stage 1, the frame encoder learns the synthetic world's frame labels.
- ``distributed``: stage 1's data parallelism (gradient all-reduce, sharded labelling, launch checks).
- ``tensorboard``: the writer of what the Trainer does not log (stage 1; validation from ``eval``).
- ``run``: one run end to end (frame cache, both stages, TensorBoard, summary, extra callbacks);
  data-parallel under torchrun / accelerate launch. Guide: docs/TRAINING.md.
"""
