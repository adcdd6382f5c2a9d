# CPU image. For CUDA, start from an nvidia/cuda runtime image, use a CUDA torch build and
# install ".[gpu,postgres]" instead.
FROM python:3.11-slim
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pixseek ./pixseek
RUN pip install --no-cache-dir torch==2.13.0 --index-url "$TORCH_INDEX_URL" \
 && pip install --no-cache-dir ".[postgres]"
EXPOSE 8000
CMD ["pixseek", "serve", "--host", "0.0.0.0", "--root", "/library"]
