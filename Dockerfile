# The tracker's image (used by docker-compose.yml). Not built in CI: no Docker engine runs there.
FROM python:3.11-slim
WORKDIR /srv/settle
COPY pyproject.toml README.md ./
COPY app ./app
COPY chains ./chains
COPY wallets ./wallets
RUN pip install --no-cache-dir .
EXPOSE 8000
CMD ["settle", "serve", "--host", "0.0.0.0"]
