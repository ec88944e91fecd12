"""Genomics: DNA tokenisation, sequence tables, genomes and intervals, classification and language-model tasks."""
