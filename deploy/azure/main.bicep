// dlstack layer 6 on Azure Container Apps: a Log Analytics workspace, a Container Apps
// environment, a user-assigned identity that may pull from the project's container registry,
// and the app: external HTTPS ingress, scaling on concurrent requests, liveness/readiness/startup
// probes on /healthz and /readyz, the API key as a secret that the container reads through the
// DLSTACK_API_KEY variable (secretRef: the value is never in the template or the image).
// Deploy with deploy.sh (az deployment group create; --dry-run = what-if).

@description('Azure region (default: the resource group\'s).')
param location string = resourceGroup().location

@description('Name prefix of every resource.')
@minLength(3)
@maxLength(20)
param name string = 'dlstack'

@description('Existing Azure Container Registry (same resource group) holding the image.')
param acrName string

@description('Image reference, e.g. myacr.azurecr.io/dlstack-serve:2026-12-02-abc1234.')
param image string

@description('The API key every /v1 route and /metrics require.')
@secure()
param apiKey string

@description('Runtime backend: onnx, torchscript or eager.')
@allowed([
  'onnx'
  'torchscript'
  'eager'
])
param backend string = 'onnx'

@description('Replicas kept running (1: no cold start).')
@minValue(0)
@maxValue(30)
param minReplicas int = 1

@description('Most replicas the scale rule may add.')
@minValue(1)
@maxValue(30)
param maxReplicas int = 5

@description('Concurrent HTTP requests per replica before another replica is added.')
@minValue(1)
param concurrentRequests int = 20

@description('vCPU per replica (Consumption profile: 0.25 .. 4).')
param cpu string = '1.0'

@description('Memory per replica, matching the CPU (2 GiB per vCPU).')
param memory string = '2Gi'

var targetPort = 8000
var acrPullRole = '7f951dda-4ed3-4680-a7ca-43fe172d538d' // built-in AcrPull

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${name}-logs'
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource env 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: '${name}-env'
  location: location
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
  }
}

resource acr 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: acrName
}

resource pullIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${name}-pull'
  location: location
}

// AcrPull on the registry for the app's identity (no admin password anywhere)
resource acrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(acr.id, pullIdentity.id, 'acrpull')
  scope: acr
  properties: {
    principalId: pullIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', acrPullRole)
  }
}

resource app 'Microsoft.App/containerApps@2024-03-01' = {
  name: '${name}-serve'
  location: location
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${pullIdentity.id}': {}
    }
  }
  dependsOn: [
    acrPull
  ]
  properties: {
    managedEnvironmentId: env.id
    configuration: {
      // Multiple: every deployment is a new revision; rollback = send traffic to an old one
      activeRevisionsMode: 'Multiple'
      ingress: {
        external: true
        targetPort: targetPort
        transport: 'auto'
        allowInsecure: false
        traffic: [
          {
            latestRevision: true
            weight: 100
          }
        ]
      }
      registries: [
        {
          server: acr.properties.loginServer
          identity: pullIdentity.id
        }
      ]
      secrets: [
        {
          name: 'api-key'
          value: apiKey
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'serve'
          image: image
          resources: {
            cpu: json(cpu)
            memory: memory
          }
          env: [
            {
              name: 'DLSTACK_API_KEY'
              secretRef: 'api-key'
            }
            {
              name: 'DLSTACK_BACKEND'
              value: backend
            }
          ]
          probes: [
            {
              type: 'Startup'
              httpGet: {
                path: '/healthz'
                port: targetPort
              }
              periodSeconds: 5
              failureThreshold: 24
            }
            {
              type: 'Liveness'
              httpGet: {
                path: '/healthz'
                port: targetPort
              }
              periodSeconds: 15
              timeoutSeconds: 5
              failureThreshold: 3
            }
            {
              type: 'Readiness'
              httpGet: {
                path: '/readyz'
                port: targetPort
              }
              periodSeconds: 10
              timeoutSeconds: 5
              failureThreshold: 3
            }
          ]
        }
      ]
      scale: {
        minReplicas: minReplicas
        maxReplicas: maxReplicas
        rules: [
          {
            name: 'http-concurrency'
            http: {
              metadata: {
                concurrentRequests: string(concurrentRequests)
              }
            }
          }
        ]
      }
    }
  }
}

output fqdn string = app.properties.configuration.ingress.fqdn
output url string = 'https://${app.properties.configuration.ingress.fqdn}'
output latestRevision string = app.properties.latestRevisionName
