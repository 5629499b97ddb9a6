"""The baseline: a DRF endpoint with the project's auth, throttles and parser; one INSERT."""

from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bench.bare.models import BareRow
from shopflow.api.parsers import JSONParser


class BareInsertApi(APIView):
    """`POST` stores the body as one row and answers 201 with its id; nothing else."""

    parser_classes = (JSONParser,)

    def post(self, request: Request) -> Response:
        row = BareRow.objects.create(user=request.user, payload=request.data)
        return Response({"id": row.pk}, status=status.HTTP_201_CREATED)
