"""The engine's lock reads the steps as the saga's last lock holder left them.

`lock_saga` sends the saga's lock and the steps' read in one round trip, two
statements: a transaction that waited for the lock must see a step its twin
claimed meanwhile. Checked against a naive version (the steps read before
the lock is held): it read the step as it was before the claim.
"""

import threading
import time

import psycopg
import pytest
from django.db import connection, transaction

from sagas import store as store_module
from sagas.models import Saga, SagaStep
from sagas.store import store
from tests.sagas.scenarios import place, saga_of

pytestmark = pytest.mark.django_db(transaction=True)


def twin_claims(saga_id: object, step_id: int, locked: threading.Event) -> None:
    """A twin advance: holds the saga's lock while it claims the step, then commits."""
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
        password=db["PASSWORD"] or None, dbname=db["NAME"],
    ) as twin:  # fmt: skip
        twin.execute("SELECT 1 FROM sagas_saga WHERE id = %s FOR UPDATE", [saga_id])
        locked.set()
        time.sleep(0.3)  # the other advance is waiting for the saga's lock by now
        twin.execute(
            "UPDATE sagas_sagastep SET status = 'running', fence = fence + 1 WHERE id = %s",
            [step_id],
        )
        twin.commit()


def test_an_advance_that_waited_for_the_lock_sees_the_step_its_twin_claimed(in_process, mug):
    # given: a started saga, and a twin advance holding its lock while it claims step 0
    order = place()
    in_process.deliver()
    saga = saga_of(order)
    step = SagaStep.objects.get(saga=saga, index=0)
    locked = threading.Event()
    twin = threading.Thread(target=twin_claims, args=(saga.pk, step.pk, locked))
    twin.start()
    assert locked.wait(10)
    # when: this advance locks the saga (waiting for the twin) and reads its steps
    with transaction.atomic():
        _, steps, _ = store().lock(saga.pk)
    twin.join()
    # then: it sees the twin's claim
    assert (steps[0].status, steps[0].fence) == (SagaStep.Status.RUNNING, step.fence + 1)


def test_the_engines_sql_reads_every_field_of_saga_and_step_in_the_models_order():
    # Model.from_db takes a full row in the models' field order: a field added to
    # either model must be added to `sql/queries.sql` (and here) in its place.
    saga_fields = tuple(field.attname for field in Saga._meta.concrete_fields)
    step_fields = tuple(field.attname for field in SagaStep._meta.concrete_fields)
    assert (saga_fields, step_fields) == (store_module._SAGA_COLUMNS, store_module._STEP_COLUMNS)
