# The vod2s3 image: `vod2s3` as its entrypoint, the API by default (docs/deployment.md,
# "Containers"). Built offline: the base is a Debian root filesystem made by
# deploy/container/build-base (python3, python3-venv, ca-certificates), and the Python
# packages come from a wheelhouse in the build context (`pip wheel --wheel-dir wheels .`),
# so the build needs neither a registry nor PyPI. deploy/container/build-image does both.
ARG BASE=localhost/vod2s3-base:bookworm

FROM ${BASE} AS build
COPY wheels/ /wheels/
# Only the wheelhouse is looked at, never the network. pip and setuptools leave the venv
# afterwards: the final stage gets no installer or build tool.
RUN python3 -m venv /opt/vod2s3 \
    && /opt/vod2s3/bin/pip install --no-cache-dir --no-index --find-links /wheels /wheels/vod2s3-*.whl \
    && /opt/vod2s3/bin/pip uninstall --yes --no-cache-dir setuptools pip

FROM ${BASE}
# A fixed uid and gid, so that the state volume and the secrets can be given to it on the host.
ARG UID=10001
RUN groupadd --gid "${UID}" vod2s3 \
    && useradd --no-log-init --uid "${UID}" --gid vod2s3 --home-dir /var/lib/vod2s3 \
       --create-home --shell /usr/sbin/nologin vod2s3
COPY --from=build /opt/vod2s3 /opt/vod2s3
ENV PATH=/opt/vod2s3/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    VOD2S3_DATABASE_URL=sqlite:////var/lib/vod2s3/vod2s3.db \
    VOD2S3_STORAGE_ROOT=/srv/storage \
    HEALTHCHECK_URL=http://127.0.0.1:8080/healthz
USER ${UID}:${UID}
WORKDIR /var/lib/vod2s3
VOLUME ["/var/lib/vod2s3"]
EXPOSE 8080
# The API's /healthz by default; a worker sets HEALTHCHECK_URL to its --metrics-port's.
# The system python3's urllib: no curl in the image for this.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=4)"]
ENTRYPOINT ["vod2s3"]
CMD ["api", "--host", "0.0.0.0", "--port", "8080"]
