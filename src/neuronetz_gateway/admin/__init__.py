"""Administrative operations on tenants, keys, limits and grants.

Used by the CLI; kept apart from it so another front end (tests, the console) can call
the same rules. Every refusal is an `AdminError` whose text is fit for an operator.
"""
