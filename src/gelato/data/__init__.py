"""Evaluation prompts (GSM8K, Spec-Bench, HumanEval) and the pair prompt formats, read by the zoo and the
experiments alike (:mod:`.workloads`)."""
