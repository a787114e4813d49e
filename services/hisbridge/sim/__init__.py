"""A simulated hospital HIS: its schema, deterministic activity generation and loading into PostgreSQL.

The simulated hospital is deliberately shaped like a typical Chinese HIS (local codes, its own department
codes, a front page copied from the 2011 form) and NOT like the national catalog: the source-mapping file
and the value maps in schemas/mapping/ are what bridge the two, exactly as for a real hospital.
"""
