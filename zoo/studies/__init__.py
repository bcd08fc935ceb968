"""zoo.studies"""
