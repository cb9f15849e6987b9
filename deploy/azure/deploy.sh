#!/usr/bin/env bash
# Build, push, deploy and roll back dlstack's serving image on Azure Container Apps.
# Needs the Azure CLI logged in (az login) and an existing resource group and container registry.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: deploy/azure/deploy.sh COMMAND [--dry-run]

commands:
  build                 build the image in Azure (az acr build) from the repository root and push it
  deploy [--dry-run]    az deployment group create with main.bicep + main.parameters.json;
                        --dry-run shows the changes (--what-if) and changes nothing
  revisions             list the app's revisions (name, created, traffic, health)
  rollback REVISION     send 100 % of the traffic to REVISION (an earlier, still active one)
  url                   print the app's URL

environment:
  AZ_RESOURCE_GROUP     resource group (required)
  AZ_ACR                container registry name, without .azurecr.io (required for build/deploy)
  IMAGE_TAG             image tag (default: the git commit, e.g. 1a2b3c4)
  DLSTACK_API_KEY       the service's API key (required for deploy; passed as a secure parameter)
  APP_NAME              the Bicep 'name' prefix (default dlstack: the app is dlstack-serve)
USAGE
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

need() {
  if [ -z "${!1:-}" ]; then
    echo "deploy.sh: set $1 (see --help)" >&2
    exit 2
  fi
}

tag() { echo "${IMAGE_TAG:-$(git -C "$repo" rev-parse --short HEAD)}"; }
app() { echo "${APP_NAME:-dlstack}-serve"; }

build() {
  need AZ_ACR
  az acr build --registry "$AZ_ACR" --image "dlstack-serve:$(tag)" \
    --file "$repo/deploy/Dockerfile" "$repo"
}

deploy() {
  need AZ_RESOURCE_GROUP
  need AZ_ACR
  need DLSTACK_API_KEY
  local what_if=()
  if [ "${1:-}" = "--dry-run" ]; then
    what_if=(--what-if)
  elif [ -n "${1:-}" ]; then
    echo "deploy.sh: unknown option $1" >&2
    usage >&2
    exit 2
  fi
  az deployment group create \
    --resource-group "$AZ_RESOURCE_GROUP" \
    --name "dlstack-$(tag)" \
    --template-file "$here/main.bicep" \
    --parameters "@$here/main.parameters.json" \
    --parameters name="${APP_NAME:-dlstack}" acrName="$AZ_ACR" \
      image="$AZ_ACR.azurecr.io/dlstack-serve:$(tag)" apiKey="$DLSTACK_API_KEY" \
    "${what_if[@]}"
}

revisions() {
  need AZ_RESOURCE_GROUP
  az containerapp revision list --resource-group "$AZ_RESOURCE_GROUP" --name "$(app)" \
    --query '[].{revision:name, created:properties.createdTime, traffic:properties.trafficWeight, health:properties.healthState}' \
    --output table
}

rollback() {
  need AZ_RESOURCE_GROUP
  if [ -z "${1:-}" ]; then
    echo "deploy.sh: rollback needs a REVISION (deploy.sh revisions lists them)" >&2
    exit 2
  fi
  az containerapp revision activate --resource-group "$AZ_RESOURCE_GROUP" --name "$(app)" \
    --revision "$1"
  az containerapp ingress traffic set --resource-group "$AZ_RESOURCE_GROUP" --name "$(app)" \
    --revision-weight "$1=100"
}

url() {
  need AZ_RESOURCE_GROUP
  echo "https://$(az containerapp show --resource-group "$AZ_RESOURCE_GROUP" --name "$(app)" \
    --query properties.configuration.ingress.fqdn --output tsv)"
}

case "${1:-}" in
  build) build ;;
  deploy) shift; deploy "$@" ;;
  revisions) revisions ;;
  rollback) shift; rollback "$@" ;;
  url) url ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
