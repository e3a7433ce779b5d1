"""Pool hygiene: near-duplicate groups (:mod:`.dedup`) and eval-set overlaps
(:mod:`.decontaminate`), stored as tables tied to a pool version, and the rule by which
selection leaves their flagged rows out (:mod:`.exclusion`)."""
