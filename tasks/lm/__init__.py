"""Language modelling and long-context recall: tokenisers, corpora, token shards, the LM task, generation, S-NIAH, BABILong."""
