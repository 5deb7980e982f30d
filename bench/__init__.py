"""Benchmarks (not tests): each reports medians/percentiles and a baseline from the same run."""
