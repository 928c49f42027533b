# dockyard in a container, built offline: no base image, just a static binary.
#   bash .ci/image            (builds the static binary, then this image as dockyard:latest)
# Run the daemon with the Docker socket and a config mounted:
#   docker run -d --name dockyard -v /var/run/docker.sock:/var/run/docker.sock \
#     -v /etc/dockyard:/etc/dockyard:ro -v /var/backups/dockyard:/var/backups/dockyard dockyard
# The image has no OpenSSH client, so ssh:// destinations need dockyard on the host.
FROM scratch
COPY target/dockyard-static /usr/local/bin/dockyard
COPY target/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY config/minimal.toml /etc/dockyard/dockyard.toml
ENV DOCKYARD_CONFIG=/etc/dockyard/dockyard.toml
ENTRYPOINT ["/usr/local/bin/dockyard"]
CMD ["daemon"]
