"""LoRA fine-tuning: data formatting and token statistics, the job store, a training runner that works in a
subprocess, the queue that starts it, checkpoints, evaluation, merge and export. Never imports gradio."""
