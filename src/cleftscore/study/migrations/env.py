"""Alembic environment: runs on the connection that :mod:`cleftscore.study.db` passes in.

There is no ``alembic.ini``: the study code builds the configuration and opens the transaction,
so an upgrade is all or nothing.
"""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=True, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
