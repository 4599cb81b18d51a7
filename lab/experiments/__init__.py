"""The paper's experiments in miniature: fewer data, the CIFAR recipe, rebuild drift at depth."""
