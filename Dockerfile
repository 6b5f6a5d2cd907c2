# notifier: slim Python 3.11 image, non-root, config and data as volumes.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY notifier ./notifier
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/notifier notifier \
 && mkdir -p /etc/notifier /var/lib/notifier \
 && chown notifier /var/lib/notifier
COPY --from=build /install /usr/local
COPY config/notifier.yaml /etc/notifier/config/notifier.yaml
ENV NOTIFIER_CONFIG=/etc/notifier/config/notifier.yaml \
    NOTIFIER_LISTEN=0.0.0.0:9095 \
    NOTIFIER_STORAGE_URL=sqlite:////var/lib/notifier/notifier.db \
    PYTHONUNBUFFERED=1
USER notifier
VOLUME ["/etc/notifier/config", "/var/lib/notifier"]
EXPOSE 9095
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9095/-/healthy', timeout=2).status == 200 else 1)"
ENTRYPOINT ["notifier"]
CMD ["serve"]
