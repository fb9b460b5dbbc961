"""Training LionFS models: ``lionfs train --config CONFIG --out DIR`` (ROS-free, never imports rclpy).

- ``config``: typed training config from YAML (``extends``, ``--set`` overrides, clear errors).
- ``build``: the run's examples (synthetic world or VideoLLM-online narration streams), tokenizer, model.
- ``dataset``: examples -> tokenized samples with uint8 frames; the batch collator.
- ``trainer``: the HF Trainer taught LionFS inputs, loss parts, model-directory checkpoints, resume.
- ``run``: one run end to end (frame cache, TensorBoard, summary); unchanged under torchrun.
"""
