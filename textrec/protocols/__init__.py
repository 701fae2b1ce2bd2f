"""Evaluation protocols beyond E1: E1-cold (held-out items), E2 (a stream of time slices), E3 (domain transfer) and
E4 (FGSM adversarial robustness), and their reports."""
