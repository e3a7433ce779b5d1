"""Evaluation: how diverse a subset is, and how good the model trained on it is.

diversity   Vendi score, coverage radius, category and length statistics of a subset
eval_sets   question / reference-answer files (Vicuna, WizardLM, AlpacaEval formats)
nll         held-out NLL of reference answers under the training prompt template
generate    batched answers from a model
judge       pairwise LLM judge over any OpenAI-compatible endpoint, cached per question
compare     paired bootstrap confidence intervals between two models (or two sets of runs)
model_eval  ``curate eval model``: NLL, generation and judging in one report
rounds      ``curate eval round``: one metrics file per pipeline round
plots       PNGs of metrics per round and a 2-D map of the pool
results     atomic JSON/JSONL writes and the file names beside a metrics file
"""
