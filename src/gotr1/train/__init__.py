"""Training: supervised fine-tuning on GoT chains and images, and GRPO."""
