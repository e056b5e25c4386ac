"""Pure domain of elicense: identifiers, holder codes, lifecycle rules, tokens, results, policies.

Nothing here does I/O; every function that depends on time takes it explicitly.
"""
