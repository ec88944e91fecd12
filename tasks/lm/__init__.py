"""Language modelling and long-context recall: tokenisers, corpora, token shards, the LM and passkey
tasks, generation through the state, S-NIAH and BABILong."""
