from django.apps import AppConfig


class CountingConfig(AppConfig):
    name = "bench.counting"
    label = "bench_counting"
    verbose_name = "Benchmark statement and task counters"

    def ready(self) -> None:
        from bench.counting import counters

        counters.install()
