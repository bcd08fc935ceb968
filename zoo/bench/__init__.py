"""zoo.bench"""
