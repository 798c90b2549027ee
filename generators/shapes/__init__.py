"""The shapes world: procedural scenes of flat coloured shapes, GenEval-like captions, and their judge.

world and evaluator are pure numpy and scipy, cheap to import anywhere; nothing here imports torch
at package import.
"""
